/**
 * Where results and errors go: result lines on stdout (human text, or one
 * JSON object per line with --json), errors on stderr as `error: <message>`
 * (or `{"error":{code,message}}` on stdout with --json), lifecycle logs on
 * stderr through pino.
 */
import { pino, type Logger } from 'pino';
import { DmemError } from '../errors.js';

/** Result printer of one command run. */
export class Output {
  /** True with --json. */
  readonly json: boolean;

  constructor(json: boolean) {
    this.json = json;
  }

  /** Prints one result: `value` as a JSON line with --json, else `human()`'s lines. */
  result(value: object, human: () => readonly string[]): void {
    if (this.json) process.stdout.write(`${JSON.stringify(value)}\n`);
    else for (const line of human()) process.stdout.write(`${line}\n`);
  }

  /** Prints human-only lines (tables, headers); nothing with --json. */
  lines(lines: readonly string[]): void {
    if (!this.json) for (const line of lines) process.stdout.write(`${line}\n`);
  }

  /** A lifecycle logger on stderr (synchronous, so nothing is lost at exit); only warnings and errors with --json. */
  logger(name: string): Logger {
    return pino({ name, level: this.json ? 'warn' : 'info', base: { pid: process.pid } }, pino.destination({ dest: 2, sync: true }));
  }
}

/**
 * Prints a failed operation's error: a JSON line on stdout with `json`, else
 * `error: <message>` on stderr. Errors that are not DmemError get code
 * INTERNAL and their stack on stderr (a bug worth reporting).
 */
export function printError(err: unknown, json: boolean): void {
  const code = err instanceof DmemError ? err.code : 'INTERNAL';
  const message = err instanceof Error ? err.message : String(err);
  if (json) process.stdout.write(`${JSON.stringify({ error: { code, message } })}\n`);
  else process.stderr.write(`error: ${message}\n`);
  if (!(err instanceof DmemError) && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
}
