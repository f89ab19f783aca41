/**
 * The metric selectors a PromQL expression reads, for checking rules and dashboards against what
 * poolside exports. Not a PromQL parser (promtool checks the syntax): a scanner that knows which
 * identifiers are functions, keywords or label lists, so every other identifier is a metric name.
 */

export interface Matcher {
  label: string;
  op: '=' | '!=' | '=~' | '!~';
  value: string;
}

export interface Selector {
  metric: string;
  matchers: Matcher[];
}

const KEYWORDS = new Set(['and', 'or', 'unless', 'bool', 'offset', 'inf', 'nan', 'atan2', 'group_left', 'group_right']);
/** Aggregations: `sum by (pool) (…)` puts the label list between the name and its parenthesis. */
const AGGREGATIONS = new Set(['sum', 'min', 'max', 'avg', 'group', 'stddev', 'stdvar', 'count', 'count_values', 'bottomk', 'topk', 'quantile']);
/** Followed by a parenthesised list of label names, not of expressions. */
const LABEL_LISTS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right']);

/** Every `metric{matchers}` in `expr`, in order. Throws on text it cannot scan. */
export function selectors(expr: string): Selector[] {
  const out: Selector[] = [];
  let i = 0;
  const n = expr.length;
  const skipSpace = (): void => {
    while (i < n && /\s/.test(expr[i])) i++;
  };
  const readString = (): string => {
    const quote = expr[i++];
    let value = '';
    while (i < n && expr[i] !== quote) {
      if (expr[i] === '\\' && quote !== '`') {
        value += expr[i + 1];
        i += 2;
      } else value += expr[i++];
    }
    if (i >= n) throw new Error(`unterminated string in: ${expr}`);
    i++;
    return value;
  };
  const skipParenthesised = (): void => {
    const close = expr.indexOf(')', i);
    if (close < 0) throw new Error(`unclosed label list in: ${expr}`);
    i = close + 1;
  };
  const readMatchers = (): Matcher[] => {
    const matchers: Matcher[] = [];
    i++; // {
    for (;;) {
      skipSpace();
      if (expr[i] === '}') {
        i++;
        return matchers;
      }
      const label = /^[a-zA-Z_][a-zA-Z0-9_]*/.exec(expr.slice(i));
      if (label === null) throw new Error(`bad matcher at ${i} in: ${expr}`);
      i += label[0].length;
      skipSpace();
      const op = /^(=~|!~|!=|=)/.exec(expr.slice(i));
      if (op === null) throw new Error(`bad matcher operator at ${i} in: ${expr}`);
      i += op[0].length;
      skipSpace();
      if (!`"'\``.includes(expr[i])) throw new Error(`matcher value is not a string at ${i} in: ${expr}`);
      matchers.push({ label: label[0], op: op[0] as Matcher['op'], value: readString() });
      skipSpace();
      if (expr[i] === ',') i++;
    }
  };
  while (i < n) {
    const c = expr[i];
    if (/\s/.test(c)) {
      i++;
    } else if (c === '"' || c === "'" || c === '`') {
      readString();
    } else if (c === '[') {
      const close = expr.indexOf(']', i);
      if (close < 0) throw new Error(`unclosed range in: ${expr}`);
      i = close + 1;
    } else if (c === '{') {
      throw new Error(`a selector without a metric name is not supported here: ${expr}`);
    } else if (/[0-9.]/.test(c)) {
      // a number, or a duration (offset 1m)
      while (i < n && /[0-9a-zA-Z.]/.test(expr[i])) i++;
    } else if (/[a-zA-Z_:]/.test(c)) {
      const ident = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(expr.slice(i))![0];
      i += ident.length;
      skipSpace();
      if (LABEL_LISTS.has(ident) && expr[i] === '(') {
        skipParenthesised();
      } else if (expr[i] === '(' || KEYWORDS.has(ident.toLowerCase()) || AGGREGATIONS.has(ident)) {
        // a function or aggregation, or an operator keyword
      } else {
        out.push({ metric: ident, matchers: expr[i] === '{' ? readMatchers() : [] });
      }
    } else {
      i++;
    }
  }
  return out;
}

/** Grafana's template variables, replaced by what a PromQL parser accepts. */
export function substituteGrafanaVariables(expr: string): string {
  return expr
    .replaceAll('$__rate_interval', '5m')
    .replaceAll('$__interval', '1m')
    .replaceAll('$__range', '1h')
    .replace(/\$\{?([a-zA-Z_][a-zA-Z0-9_]*)\}?/g, '.+');
}
