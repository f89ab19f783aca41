// Build step: tsc keeps main.ts's shebang but not an executable mode; the `poolside` bin (and
// `./dist/main.js`) needs one. Plain JS so it runs wherever the build does, without tsx.
import { chmodSync, statSync } from 'node:fs';

for (const file of process.argv.slice(2)) {
  chmodSync(file, statSync(file).mode | 0o111);
}
