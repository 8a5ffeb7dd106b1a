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
