import { describe, expect, it } from 'vitest';
import { parseCommandLine } from '../../src/cli-args.js';

describe('parseCommandLine', () => {
  it('reads every spelling of --config', () => {
    for (const argv of [['--config', 'a.yaml'], ['--config=a.yaml'], ['-c', 'a.yaml'], ['-ca.yaml']]) {
      expect(parseCommandLine(argv), argv.join(' ')).toEqual({ mode: 'run', file: 'a.yaml' });
    }
    expect(parseCommandLine(['--check-config', 'a.yaml'])).toEqual({ mode: 'check', file: 'a.yaml' });
    expect(parseCommandLine(['--check-config=a.yaml'])).toEqual({ mode: 'check', file: 'a.yaml' });
  });

  it('help and version win over everything else', () => {
    expect(parseCommandLine(['--help'])).toEqual({ mode: 'help' });
    expect(parseCommandLine(['-h'])).toEqual({ mode: 'help' });
    expect(parseCommandLine(['--config', 'a.yaml', '--version'])).toEqual({ mode: 'version' });
  });

  it('usage errors name what is wrong', () => {
    const error = (argv: string[]) => {
      const command = parseCommandLine(argv);
      return command.mode === 'usage_error' ? command.message : `not an error: ${command.mode}`;
    };
    expect(error(['--frobnicate'])).toBe('unknown option --frobnicate');
    expect(error(['-x'])).toBe('unknown option -x');
    expect(error(['--config'])).toBe('--config needs a FILE');
    expect(error(['--config', '--check-config', 'a.yaml'])).toBe('--config needs a FILE');
    expect(error(['a.yaml'])).toBe('unexpected argument a.yaml');
    expect(error([])).toBe('no config file: give --config FILE');
    expect(error(['--config=a', '--check-config=b'])).toBe('give --config or --check-config, not both');
    expect(error(['--config='])).toBe('the config file name is empty');
    // parseArgs alone would keep the last: the first file would be silently ignored.
    expect(error(['--config', 'a.yaml', '-c', 'b.yaml'])).toBe('give --config once');
    expect(error(['--check-config=a.yaml', '--check-config=b.yaml'])).toBe('give --check-config once');
  });
});
