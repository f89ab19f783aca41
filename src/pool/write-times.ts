/**
 * When a connection's in-flight requests were written, kept per write batch rather than per
 * request: the connection reads the clock once per flush, never per request. Requests are
 * numbered in the order they were queued; each batch records one past the number of its last
 * request and when it was handed to the socket. A ring of plain numbers: no allocation per batch.
 */
export class WriteTimes {
  #ends = new Float64Array(8);
  #times = new Float64Array(8);
  #head = 0;
  #length = 0;

  /** Every request numbered below `end` was written at `at` (or earlier). */
  record(end: number, at: number): void {
    if (this.#length === this.#ends.length) this.#grow();
    const i = (this.#head + this.#length) % this.#ends.length;
    this.#ends[i] = end;
    this.#times[i] = at;
    this.#length++;
  }

  /**
   * When request `n` was written, or undefined when it was not yet. Forgets the batches wholly
   * before `n`: callers ask about the oldest request in flight, which only moves forward.
   */
  writtenAt(n: number): number | undefined {
    while (this.#length > 0 && this.#ends[this.#head] <= n) {
      this.#head = (this.#head + 1) % this.#ends.length;
      this.#length--;
    }
    return this.#length === 0 ? undefined : this.#times[this.#head];
  }

  #grow(): void {
    const size = this.#ends.length * 2;
    const ends = new Float64Array(size);
    const times = new Float64Array(size);
    for (let k = 0; k < this.#length; k++) {
      const i = (this.#head + k) % this.#ends.length;
      ends[k] = this.#ends[i];
      times[k] = this.#times[i];
    }
    this.#ends = ends;
    this.#times = times;
    this.#head = 0;
  }
}
