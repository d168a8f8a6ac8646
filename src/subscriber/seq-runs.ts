/**
 * The publisher sequence numbers of the live messages applied while a snapshot is fetched, kept as
 * runs of consecutive numbers (memory grows with the gaps, not with the messages). Once the
 * snapshot's end marker says which number it matches, they tell whether every later message was
 * applied: the Clone pattern's check, without holding the messages back.
 */
export class SeqRuns {
  private readonly runs: [number, number][] = [];
  private broken = false;

  constructor(private readonly maxRuns = 1_000) {}

  add(seq: number): void {
    const last = this.runs.at(-1);
    // A number at or below the last one: the publisher started over; nothing lines up any more.
    if (last !== undefined && seq <= last[1]) this.broken = true;
    else if (last !== undefined && seq === last[1] + 1) last[1] = seq;
    else if (this.runs.length >= this.maxRuns) this.broken = true;
    else this.runs.push([seq, seq]);
  }

  /**
   * The number through which the state is complete, given a snapshot matching `snapshotSeq`: the
   * end of the run that continues it without a hole; undefined when a message after it is missing
   * (or the numbers went back, or too many holes to track), so another snapshot is needed.
   */
  appliedThrough(snapshotSeq: number): number | undefined {
    if (this.broken) return undefined;
    let through = snapshotSeq;
    for (const [from, to] of this.runs) {
      if (to <= through) continue;
      if (from > through + 1) return undefined;
      through = to;
    }
    return through;
  }
}
