import { wsError, type ResilientWebSocketError } from './errors.js';
import { CloseCode, shutdownAdviceDelay } from './protocol.js';
import type { RetryContext, RetryPolicy } from './retry.js';

/**
 * The pieces of the reconnect loop that do not need the transport's state:
 * the attempt's deadline, the delay before the next attempt, the wait for
 * it (cut short by `disconnect()`), and when retrying cannot help.
 */

/** Same code on this many sockets in a row, no ack advancing: the peer refuses our replay for good (§6). */
const MAX_REFUSED_REPLAYS = 3;

/**
 * Runs one connection attempt with a deadline: after `timeoutMs` it fails
 * with `connectTimeout` and `signal` aborts what is still running (the
 * negotiate request); it aborts too when the attempt fails.
 */
export async function withinDeadline(timeoutMs: number, run: (signal: AbortSignal) => Promise<void>): Promise<void> {
  const abort = new AbortController();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      abort.abort();
      reject(wsError('connectTimeout', `no connection within ${timeoutMs} ms`));
    }, timeoutMs);
  });
  try {
    await Promise.race([run(abort.signal), timeout]);
  } catch (e) {
    abort.abort();
    throw e;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The policy's delay before the next attempt, or undefined to give up. A
 * server shutting down (1012) may say when to come back in its close
 * reason: that wins over the policy's delay, spreading the clients out.
 */
export function retryDelay(policy: RetryPolicy, ctx: RetryContext): number | undefined {
  const delay = policy(ctx);
  if (delay === undefined) return undefined;
  const error = ctx.error;
  if (error.kind === 'closed' && error.closeCode === CloseCode.ServiceRestart) {
    return shutdownAdviceDelay(error.message.replace(/^[^{]*/, '')) ?? delay;
  }
  return delay;
}

/** The wait before the next attempt; `wake()` ends it early (disconnect). */
export class RetryTimer {
  private timer: ReturnType<typeof setTimeout> | undefined;
  private wakeUp: (() => void) | undefined;

  sleep(delayMs: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = () => {
        this.timer = undefined;
        this.wakeUp = undefined;
        resolve();
      };
      this.wakeUp = done;
      this.timer = setTimeout(done, delayMs);
    });
  }

  wake(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.wakeUp?.();
  }
}

/**
 * Counts sockets the server closed with 1009/1002: it refused what we sent.
 * A replay sends the same messages again, so after MAX_REFUSED_REPLAYS in a
 * row with the same code and no ack advancing, retrying cannot help.
 */
export class ReplayRefusals {
  private last: { code: number; count: number; acked: number } | undefined;
  /** Set once the peer refused for good; `connect()` clears it. */
  forGood = false;

  reset(): void {
    this.last = undefined;
    this.forGood = false;
  }

  /** A socket ended; the error to end with when this was one refusal too many. */
  onClose(code: number | undefined, byUs: boolean, stateful: boolean, acked: number): ResilientWebSocketError | undefined {
    if (!stateful || byUs || (code !== CloseCode.MessageTooBig && code !== CloseCode.ProtocolError)) {
      this.last = undefined;
      return undefined;
    }
    const r = this.last;
    const count = r && r.code === code && r.acked === acked ? r.count + 1 : 1;
    this.last = { code, count, acked };
    if (count < MAX_REFUSED_REPLAYS) return undefined;
    this.last = undefined;
    this.forGood = true;
    return wsError('peerRefusesReplay', `the server refused our messages with ${code} on ${count} sockets in a row`, { closeCode: code });
  }
}
