// A position in the event log (schemas/position.py): the next offset per partition,
// partition 0 first, written as the offsets joined by dots ("12.0.7"). Live ids, replay
// ids, /api/state's `position` and X-Log-Position all use this one form; this is the one
// module of the pages that reads or writes it.

const MAX_LENGTH = 1000; // as schemas.position.MAX_LENGTH

// The offsets a position names, or null if `text` is not one.
export function parsePosition(text) {
  const s = String(text ?? "").trim();
  if (!s || s.length > MAX_LENGTH || !/^\d+(\.\d+)*$/.test(s)) return null;
  return s.split(".").map(Number);
}

export function formatPosition(offsets) {
  return offsets.join(".");
}
