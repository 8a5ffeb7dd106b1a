// Bytes a session keeps for its whole life (a server version, a database or user name), held at
// the cost of what they are and not of where they came from.
//
// A slice of a network read keeps the whole read alive; a copy made by Buffer.from() is a slice of
// Node's shared 8 KiB pool and keeps that whole block alive; a Buffer of its own (an ArrayBuffer
// with its backing store) costs a few hundred bytes. Sessions mostly name the same few values, so
// the copies are shared: one Buffer per distinct value. They must never be written to.

/** The shared copies, by their bytes as latin1 text (one character per byte). */
const shared = new Map<string, Buffer>();
/** Past this many distinct values the table starts afresh (sessions keep the copies they hold). */
const MAX_SHARED = 256;

/** A read-only copy of `bytes` that lives apart from any network buffer or pool block. */
export function sharedCopy(bytes: Uint8Array): Buffer {
  const key = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
  let copy = shared.get(key);
  if (copy === undefined) {
    if (shared.size >= MAX_SHARED) shared.clear();
    copy = Buffer.allocUnsafeSlow(bytes.length);
    copy.set(bytes);
    shared.set(key, copy);
  }
  return copy;
}

/** Typed arrays up to this size live on V8's heap: no backing store to allocate, sweep and free. */
export const ON_HEAP_BYTES = 64;

/**
 * Bytes [start, end) of `src` in a Buffer of their own (exact size, no pool block, no shared
 * backing store), for bytes that are kept or handed to Lua. A small copy stays on V8's heap and is
 * made element by element: a view (subarray) of a small on-heap Buffer, or Buffer.copy() from it,
 * would first move it off the heap, which costs more than the copy (hooks run per query).
 */
export function ownCopy(src: Uint8Array, start = 0, end = src.length): Buffer {
  const n = end - start;
  const copy = Buffer.allocUnsafeSlow(n);
  if (n <= ON_HEAP_BYTES) for (let i = 0; i < n; i++) copy[i] = src[start + i]!;
  else copy.set(src.subarray(start, end));
  return copy;
}
