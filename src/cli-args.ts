/**
 * The command line's arguments, through node:util parseArgs: what main.ts is asked to do, or the
 * usage error to print (exit 2). Pure: no process.*, so it is unit-testable and main.ts keeps the
 * I/O.
 *
 *   poolside --config FILE | --config=FILE | -c FILE    run
 *   poolside --check-config FILE                        validate FILE, print every problem, exit 0 or 2
 *   poolside --version | --help
 */
import { parseArgs } from 'node:util';

/** `docs`: where the configuration reference is (main.ts knows where the package is installed). */
export const usage = (docs: string): string => `usage: poolside --config FILE          run with FILE (also --config=FILE, -c FILE)
       poolside --check-config FILE    check FILE: every problem with file:line:column, exit 0 or 2
       poolside --version              print the version
       poolside --help                 this text

Configuration reference: ${docs}
Every option with its default: config.example.yaml.`;

export type Command =
  | { mode: 'run'; file: string }
  | { mode: 'check'; file: string }
  | { mode: 'help' }
  | { mode: 'version' }
  | { mode: 'usage_error'; message: string };

const OPTIONS = {
  config: { type: 'string', short: 'c' },
  'check-config': { type: 'string' },
  version: { type: 'boolean', short: 'v' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** parseArgs's own words for "unknown option" / "missing value", with the option named. */
function describeParseError(err: Error): string {
  const code = (err as NodeJS.ErrnoException).code;
  const option = /'([^']+)'/.exec(err.message)?.[1];
  if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && option !== undefined) return `unknown option ${option}`;
  if (code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL' && option !== undefined) return `unexpected argument ${option}`;
  if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
    // "Option '-c, --config <value>' argument missing"
    const name = /--[a-z-]+/.exec(err.message)?.[0];
    return name === undefined ? err.message : `${name} needs a FILE`;
  }
  return err.message;
}

export function parseCommandLine(argv: readonly string[]): Command {
  let values: { config?: string; 'check-config'?: string; version?: boolean; help?: boolean };
  let given: number;
  try {
    const parsed = parseArgs({ args: [...argv], options: OPTIONS, strict: true, allowPositionals: false, tokens: true });
    values = parsed.values;
    given = parsed.tokens.filter((t) => t.kind === 'option' && (t.name === 'config' || t.name === 'check-config')).length;
  } catch (err) {
    return { mode: 'usage_error', message: describeParseError(err as Error) };
  }
  // parseArgs keeps the last of a repeated option: two files would silently run the second.
  if (given > 1 && values.config !== undefined && values['check-config'] === undefined) return { mode: 'usage_error', message: 'give --config once' };
  if (given > 1 && values['check-config'] !== undefined && values.config === undefined) return { mode: 'usage_error', message: 'give --check-config once' };
  if (values.help === true) return { mode: 'help' };
  if (values.version === true) return { mode: 'version' };
  const { config, 'check-config': check } = values;
  if (config !== undefined && check !== undefined) {
    return { mode: 'usage_error', message: 'give --config or --check-config, not both' };
  }
  if (config === '' || check === '') return { mode: 'usage_error', message: 'the config file name is empty' };
  if (check !== undefined) return { mode: 'check', file: check };
  if (config !== undefined) return { mode: 'run', file: config };
  return { mode: 'usage_error', message: 'no config file: give --config FILE' };
}
