/**
 * The members of a group that churns (the clients connected to a pool, or to poolside; a framed
 * connection's requests in flight, by the id poolside gave them), by their id, without a Map or a
 * Set.
 *
 * V8 gives a Map or Set a new table as entries come and go, and leaves the old table pointing at
 * its successor (for iterators still walking it). Once one of those dead tables has been promoted
 * to the old generation, each scavenge treats its successor as live, and the successor's, down to
 * the current table, with every client those tables listed when they were replaced. With
 * short-lived clients that is nearly every client: measured under a PHP-style load (8 clients
 * each connecting, sending 5 commands and closing, ~680 clients/s), 1–2.3 MB survived each
 * scavenge and was promoted, and scavenges paused the process for 4–15 ms; without the two
 * client registries that were a Set and a Map, 0.35 MB and 2.5–3.6 ms.
 *
 * Here the members sit in an array in the order they were added (as a Map or Set iterates them:
 * CLIENT LIST and /stats list clients oldest first, as Redis does), and the id → position index
 * holds only numbers: a table the engine discards refers to no member. A removed member leaves a
 * hole (undefined, so the array holds no one who left); once holes are half the array it is
 * compacted in one pass, so removal stays O(1) amortized and the array at most twice the members.
 */
export class Roster<T extends { readonly id: number }> {
  /** The members in the order they were added, with holes where members were removed. */
  #slots: (T | undefined)[] = [];
  #size = 0;
  /** Every slot before this one is a hole: first() starts here, so it is O(1) amortized. */
  #head = 0;
  /** id → position in #slots; numbers only (see above). */
  readonly #position: Record<number, number> = Object.create(null) as Record<number, number>;

  get size(): number {
    return this.#size;
  }

  /** Adds a member whose id is not in the roster; it comes last in snapshot(). */
  add(member: T): void {
    if (this.#position[member.id] !== undefined) throw new Error(`roster: id ${member.id} is already a member`);
    this.#position[member.id] = this.#slots.length;
    this.#slots.push(member);
    this.#size++;
  }

  /** Removes the member with this id; false if there was none. The others keep their order. */
  remove(id: number): boolean {
    const at = this.#position[id];
    if (at === undefined) return false;
    delete this.#position[id];
    const slots = this.#slots;
    slots[at] = undefined;
    this.#size--;
    if (at === slots.length - 1) {
      // The newest left: shorten rather than leave holes at the end.
      let end = at;
      while (end > 0 && slots[end - 1] === undefined) end--;
      slots.length = end;
      if (this.#head > end) this.#head = end;
    }
    if (this.#size < slots.length >> 1) this.#compact();
    return true;
  }

  get(id: number): T | undefined {
    const at = this.#position[id];
    return at === undefined ? undefined : this.#slots[at];
  }

  /** The member added first of those still in the roster. */
  first(): T | undefined {
    const slots = this.#slots;
    while (this.#head < slots.length && slots[this.#head] === undefined) this.#head++;
    return slots[this.#head];
  }

  /** Removes every member. */
  clear(): void {
    for (const member of this.#slots) if (member !== undefined) delete this.#position[member.id];
    this.#slots = [];
    this.#size = 0;
    this.#head = 0;
  }

  /** The members now, oldest first, as a copy: a loop over it may remove members (closing a client does). */
  snapshot(): T[] {
    const members: T[] = [];
    for (const member of this.#slots) if (member !== undefined) members.push(member);
    return members;
  }

  /** Closes the holes, keeping the order: one pass, after at least as many removals as members left. */
  #compact(): void {
    const slots = this.#slots;
    let to = 0;
    for (let from = 0; from < slots.length; from++) {
      const member = slots[from];
      if (member === undefined) continue;
      slots[to] = member;
      this.#position[member.id] = to;
      to++;
    }
    slots.length = to;
    this.#head = 0;
  }
}
