import { asWsError, wsError } from './errors.js';
import { negotiateUrl, parseNegotiateResponse, type SessionInfo } from './protocol.js';
import type { Resolved } from './options.js';
import type { WebSocketConstructor, WebSocketLike } from './types.js';

/*
 * The steps of an attempt that do not depend on the transport's state:
 * the URL and token (the application's hooks), negotiate (Stateful,
 * PROTOCOL.md §1) and creating the socket, with the token where the
 * options put it.
 */

/**
 * The URL and token of an attempt: `getAuthToken`, then the application's
 * `negotiate` hook (WebSocketConnectionHandler), which may replace both.
 */
export async function resolveTarget(url: string, options: Resolved): Promise<{ url: string; token: string | undefined }> {
  let token: string | undefined;
  if (options.getAuthToken) {
    try {
      token = (await options.getAuthToken()) ?? undefined;
    } catch (e) {
      throw wsError('auth', `getAuthToken failed: ${asWsError(e).message}`);
    }
  }
  if (options.negotiate) {
    let r;
    try {
      r = await options.negotiate({ url, ...(token !== undefined ? { authToken: token } : {}) });
    } catch (e) {
      throw asWsError(e, 'negotiate');
    }
    if (r && typeof r.url === 'string') url = r.url;
    if (r && 'accessToken' in r) token = r.accessToken ?? undefined;
    else if (r && 'authToken' in r) token = r.authToken ?? undefined;
  }
  return { url, token };
}

/** POSTs to the negotiate endpoint of `url`: the session to open a socket for. */
export async function negotiate(
  url: string, token: string | undefined, signal: AbortSignal, clientId: string, options: Resolved,
): Promise<SessionInfo> {
  const endpoint = negotiateUrl(url);
  const headers: Record<string, string> = { 'Content-Type': 'application/json', ...options.headers };
  if (token !== undefined) headers.Authorization = `Bearer ${token}`;
  let resp: Response;
  try {
    resp = await fetch(endpoint, {
      method: 'POST',
      headers,
      body: JSON.stringify({ client_id: clientId, max_message_size: options.maxMessageSize }),
      redirect: 'manual',
      signal,
    });
  } catch (e) {
    throw wsError('connectionLost', `negotiate failed: ${asWsError(e).message}`);
  }
  if (resp.status === 404 || resp.status === 405) {
    throw wsError('protocolNotSupported', `negotiate answered HTTP ${resp.status}`);
  }
  if (resp.status !== 200) {
    await resp.body?.cancel().catch(() => undefined);
    throw wsError('negotiateRejected', `negotiate answered HTTP ${resp.status}`, { status: resp.status });
  }
  let body: unknown;
  try {
    body = await resp.json();
  } catch (e) {
    throw wsError('negotiate', `negotiate response: ${asWsError(e).message}`);
  }
  return parseNegotiateResponse(body, url, options.allowNegotiateRedirect);
}

/**
 * Creates the socket (not yet open): http(s) URLs become ws(s), the token
 * goes in the query parameter or, with `authTokenQueryParam: null`, in a
 * header (only Node's `ws` sends one).
 */
export function createSocket(
  Ctor: WebSocketConstructor, url: string, token: string | undefined, protocols: string[], options: Resolved,
): WebSocketLike {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw wsError('invalidUrl', `not a URL: ${JSON.stringify(redactQuery(url))}`);
  }
  if (parsed.protocol === 'http:') parsed.protocol = 'ws:';
  else if (parsed.protocol === 'https:') parsed.protocol = 'wss:';
  else if (parsed.protocol !== 'ws:' && parsed.protocol !== 'wss:') {
    throw wsError('invalidUrl', `${redactQuery(url)}: the scheme must be ws or wss`);
  }
  let target = parsed.toString();
  const headers: Record<string, string> = { ...options.headers };
  if (token !== undefined) {
    const param = options.authTokenQueryParam;
    if (param !== null) {
      parsed.searchParams.set(param, token);
      target = parsed.toString();
    } else {
      headers.Authorization = `Bearer ${token}`;
    }
  }
  let ws: WebSocketLike;
  try {
    ws = Object.keys(headers).length > 0
      ? new Ctor(target, protocols, { headers })
      : new Ctor(target, protocols);
  } catch (e) {
    // The constructor's message may quote the URL, and so the token in its query.
    const message = token !== undefined ? asWsError(e).message.split(token).join('<redacted>') : asWsError(e).message;
    throw wsError('invalidUrl', `cannot open a WebSocket to ${redactQuery(url)}: ${message}`);
  }
  // Node's ws hands out its Buffer as is with 'nodebuffer' (read in place
  // by the receive side); browsers know only 'arraybuffer' and 'blob'.
  ws.binaryType = typeof ws.on === 'function' ? 'nodebuffer' : 'arraybuffer';
  return ws;
}

/** A URL without its query (which may hold a token) for messages. */
function redactQuery(url: string): string {
  const q = url.indexOf('?');
  return q < 0 ? url : `${url.slice(0, q)}?<redacted>`;
}
