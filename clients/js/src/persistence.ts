/**
 * `persistent: true`: the client's outbox, its unacknowledged window and its
 * session (PROTOCOL.md §1's ids and the seqs) outlive the page or process,
 * so a reload within the resume window resumes the same session and every
 * message still arrives exactly once, in order. In browsers the state lives
 * in IndexedDB, in Node.js in a file (`storePath`); any other place through
 * a `PersistentStore`.
 *
 * The state is one small JSON-able snapshot, rewritten whole: writes are
 * coalesced (one write covers every change made while the previous one ran),
 * so a burst of sends costs a few writes, not one per message.
 */
import { wsError } from './errors.js';
import type { SessionInfo } from './protocol.js';

/** Where a persistent client keeps its state. */
export interface PersistentStore {
  /** The saved state, or `undefined` when there is none. */
  load(): Promise<unknown>;
  /** Replaces the saved state. */
  save(state: unknown): Promise<void>;
}

/** One stored message: text as is, bytes as base64. */
export interface StoredMessage {
  seq?: number;
  priority?: number;
  text?: string;
  base64?: string;
}

/** What a persistent client saves (version 1). */
export interface StoredState {
  version: 1;
  clientId: string;
  /** The negotiated session, as negotiate gave it. */
  session?: SessionInfo;
  /** The highest server seq delivered to the application. */
  delivered: number;
  nextSeq: number;
  /** Sent, not acknowledged (Stateful), oldest first. */
  window: StoredMessage[];
  /** Not yet sent, in sending order. */
  outbox: StoredMessage[];
}

export function encodeStored(data: string | Uint8Array, extra: { seq?: number; priority?: number } = {}): StoredMessage {
  return typeof data === 'string' ? { ...extra, text: data } : { ...extra, base64: toBase64(data) };
}

export function decodeStored(m: StoredMessage): string | Uint8Array {
  return m.text !== undefined ? m.text : fromBase64(m.base64 ?? '');
}

/** Checks a loaded value; `undefined` (start afresh) for anything not a version-1 state. */
export function readStored(v: unknown): StoredState | undefined {
  if (typeof v !== 'object' || v === null) return undefined;
  const s = v as Partial<StoredState>;
  if (s.version !== 1 || typeof s.clientId !== 'string' || !Array.isArray(s.window) || !Array.isArray(s.outbox)
    || typeof s.nextSeq !== 'number' || typeof s.delivered !== 'number') return undefined;
  return s as StoredState;
}

function toBase64(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < b.length; i += 0x8000) s += String.fromCharCode(...b.subarray(i, i + 0x8000));
  return btoa(s);
}

function fromBase64(s: string): Uint8Array {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** `node:fs/promises`, loaded only where a file store is used (never in a browser bundle). */
function nodeFs(): Promise<any> { // eslint-disable-line @typescript-eslint/no-explicit-any
  const name = 'node:fs/promises';
  return import(name);
}

/** A file (Node.js): written to a temporary name and renamed, so a crash leaves the old or the new state, never half of one. */
export function fileStore(path: string): PersistentStore {
  return {
    async load() {
      const fs = await nodeFs();
      let text: string;
      try {
        text = await fs.readFile(path, 'utf8');
      } catch (e) {
        if ((e as { code?: string }).code === 'ENOENT') return undefined;
        throw e;
      }
      try {
        return JSON.parse(text);
      } catch {
        return undefined;
      }
    },
    async save(state) {
      const fs = await nodeFs();
      const tmp = `${path}.tmp`;
      await fs.writeFile(tmp, JSON.stringify(state));
      await fs.rename(tmp, path);
    },
  };
}

interface IdbFactory {
  open(name: string, version?: number): IdbRequest;
}
interface IdbRequest {
  result: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  error: unknown;
  onsuccess: (() => void) | null;
  onerror: (() => void) | null;
  onupgradeneeded?: (() => void) | null;
}

/** IndexedDB (browsers): database `resilient-ws`, object store `state`, one record per `key`. */
export function indexedDbStore(key: string, factory?: IdbFactory): PersistentStore {
  const idb = factory ?? (globalThis as { indexedDB?: IdbFactory }).indexedDB;
  if (!idb) throw wsError('invalidConfig', 'persistent: true needs IndexedDB (browsers) or storePath (Node.js)');
  let db: Promise<any> | undefined; // eslint-disable-line @typescript-eslint/no-explicit-any
  const open = () => {
    db ??= new Promise((resolve, reject) => {
      const req = idb.open('resilient-ws', 1);
      req.onupgradeneeded = () => req.result.createObjectStore('state');
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
    return db;
  };
  const run = async (mode: 'readonly' | 'readwrite', f: (store: any) => IdbRequest) => { // eslint-disable-line @typescript-eslint/no-explicit-any
    const d = await open();
    return new Promise<unknown>((resolve, reject) => {
      const tx = d.transaction('state', mode);
      const req = f(tx.objectStore('state'));
      // Resolved on the transaction's completion: only then is a write durable.
      tx.oncomplete = () => resolve(req.result);
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error);
    });
  };
  return {
    load: () => run('readonly', (s) => s.get(key)),
    save: async (state) => { await run('readwrite', (s) => s.put(state, key)); },
  };
}

/** The store `persistent: true` uses: the one given, else a file at `storePath`, else IndexedDB. */
export function defaultStore(o: { store?: PersistentStore; storePath?: string; storeKey: string }): PersistentStore {
  if (o.store) return o.store;
  if (o.storePath !== undefined) return fileStore(o.storePath);
  return indexedDbStore(o.storeKey);
}

/**
 * Coalesced saves of one snapshot: `save()` resolves once a write that
 * started after the call finished, and while one write runs, every
 * `save()` shares the next one.
 */
export class Persister {
  /** Resolves once the saved state was taken back (before connect and send). */
  loaded: Promise<void> = Promise.resolve();
  private running: Promise<void> = Promise.resolve();
  private next: Promise<void> | undefined;

  constructor(
    private readonly store: PersistentStore,
    private readonly snapshot: () => StoredState,
    private readonly onError: (e: unknown) => void,
    /** A write finished: what it saved is now safe to show the server. */
    private readonly onSaved: (state: StoredState) => void,
  ) {}

  load(): Promise<unknown> {
    return this.store.load().catch((e) => {
      this.onError(e);
      return undefined;
    });
  }

  save(): Promise<void> {
    if (this.next) return this.next;
    const p = this.running.then(() => {
      // The snapshot is taken when the write starts: later changes go to the next one.
      this.next = undefined;
      const state = this.snapshot();
      return this.store.save(state).then(() => this.onSaved(state));
    });
    this.next = p;
    this.running = p.catch((e) => this.onError(e));
    return this.running;
  }
}
