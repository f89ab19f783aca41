/**
 * A first-in first-out queue on a growable ring buffer: O(1) push and shift without the
 * O(n) `Array.prototype.shift` of a plain array.
 */
/** Shared by every Fifo that was never pushed to: never written (push grows first), so no array per idle queue. */
const NONE: never[] = [];

export class Fifo<T> {
  #items: (T | undefined)[] = NONE;
  #head = 0;
  #length = 0;
  /** Size of the first ring, allocated at the first push: most queues (a session's backlog) never get one. */
  readonly #capacity: number;

  constructor(capacity = 16) {
    this.#capacity = Math.max(1, capacity);
  }

  get length(): number {
    return this.#length;
  }

  push(item: T): void {
    if (this.#length === this.#items.length) this.#grow();
    this.#items[(this.#head + this.#length) % this.#items.length] = item;
    this.#length++;
  }

  peek(): T | undefined {
    return this.#length === 0 ? undefined : this.#items[this.#head];
  }

  shift(): T | undefined {
    if (this.#length === 0) return undefined;
    const item = this.#items[this.#head];
    this.#items[this.#head] = undefined;
    this.#head = (this.#head + 1) % this.#items.length;
    this.#length--;
    return item;
  }

  /** Removes and returns every item, oldest first. */
  drain(): T[] {
    const out: T[] = [];
    for (let item = this.shift(); item !== undefined; item = this.shift()) out.push(item);
    return out;
  }

  /** Forgets every item and the ring itself (an owner that is closing): no array to return. */
  clear(): void {
    this.#items = NONE;
    this.#head = 0;
    this.#length = 0;
  }

  *[Symbol.iterator](): IterableIterator<T> {
    for (let i = 0; i < this.#length; i++) yield this.#items[(this.#head + i) % this.#items.length] as T;
  }

  #grow(): void {
    const items = new Array<T | undefined>(this.#items.length === 0 ? this.#capacity : this.#items.length * 2);
    for (let i = 0; i < this.#length; i++) items[i] = this.#items[(this.#head + i) % this.#items.length];
    this.#items = items;
    this.#head = 0;
  }
}
