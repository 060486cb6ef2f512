/**
 * `dmem server --listen HOST:PORT`: serves the pool to remote clients in
 * server-side mode (src/transports/tcp/server.ts, docs/protocol.md) instead
 * of only keeping it mapped. The core runs in this process; each connection
 * is a client of the pool with its own slot and lease. Without
 * --token-file the server accepts only loopback addresses and says so.
 */
import { readFileSync } from 'node:fs';
import { Option, type Command } from 'commander';
import { InvalidArgumentError } from '../errors.js';
import { serveTcp } from '../transports/tcp/server.js';
import { removeShm } from '../../plugins/cxl-shm/index.js';
import { formatBytes } from '../units.js';
import { intIn } from './options.js';
import { pairs } from './format.js';
import { Output } from './output.js';
import { untilSignal } from './until-signal.js';
import type { ServerFlags } from './server.js';

/** The flags `dmem server` passes on when --listen is given. */
export interface TcpServeFlags extends ServerFlags {
  listen?: string;
  tokenFile?: string;
  tlsCert?: string;
  tlsKey?: string;
  node?: number;
}

/** Adds --listen, --token-file, --tls-cert, --tls-key and --node to `dmem server`. */
export function addTcpServeOptions(cmd: Command): Command {
  return cmd
    .option('--listen <host:port>', 'serve the pool to remote clients over TCP at HOST:PORT (port 0: any free port; the URL is printed), or unix:PATH; clients use openPool("tcp://HOST:PORT"). With --transport ofi: the bootstrap address of one-sided clients (ofi+PROVIDER://HOST:PORT)')
    .option('--token-file <file>', 'with --listen: file holding the shared token clients must present (trailing newline ignored); without it only loopback addresses are allowed (--transport ofi requires it)')
    .option('--tls-cert <file>', 'with --listen: PEM certificate: serve TLS (clients use tls://HOST:PORT)')
    .option('--tls-key <file>', 'with --listen: PEM private key of --tls-cert')
    .addOption(new Option('--node <id>', 'with --listen: memory-node id put into this server\'s gaddrs (0..4095)').argParser(intIn(0, 4095)).default(0));
}

/** Reads a token file: its bytes, without one trailing newline. @throws InvalidArgumentError */
export function readTokenFile(path: string): Buffer {
  let b: Buffer;
  try {
    b = readFileSync(path);
  } catch (err) {
    throw new InvalidArgumentError(`cannot read token file ${path}: ${(err as Error).message}`);
  }
  let end = b.length;
  if (end > 0 && b[end - 1] === 0x0a) end--;
  if (end > 0 && b[end - 1] === 0x0d) end--;
  if (end === 0) throw new InvalidArgumentError(`token file ${path} is empty`);
  return b.subarray(0, end);
}

/** Runs the TCP server until SIGINT or SIGTERM. */
export async function serveTcpCommand(flags: TcpServeFlags): Promise<void> {
  const out = new Output(flags.json);
  const log = out.logger('dmem-server');
  if ((flags.tlsCert === undefined) !== (flags.tlsKey === undefined)) throw new InvalidArgumentError('give both --tls-cert and --tls-key, or neither');
  const token = flags.tokenFile === undefined ? null : readTokenFile(flags.tokenFile);
  const tls = flags.tlsCert && flags.tlsKey ? { cert: readFileSync(flags.tlsCert), key: readFileSync(flags.tlsKey) } : null;
  const server = await serveTcp(`shm:${flags.pool}`, {
    listen: flags.listen, token, tls, size: flags.size, clients: flags.clients, leaseMs: flags.leaseMs,
    node: flags.node ?? 0, monitor: flags.monitor, logger: log.child({ component: 'tcp' }, { level: 'info' }),
  });
  if (token === null) log.warn({ url: server.url }, 'no --token-file: listening on loopback only, and any local process may connect');
  const g = server.pool.geometry;
  out.result(
    {
      event: 'started', pool: flags.pool, url: server.url, port: server.port, node: server.pool.node, token: token !== null, tls: tls !== null,
      poolBytes: g.poolBytes, dataBytes: g.dataBytes, maxClients: g.maxClients, leaseMs: server.pool.leaseMs, pid: process.pid,
    },
    () => pairs([
      ['pool', flags.pool],
      ['url', server.url],
      ['node', String(server.pool.node)],
      ['auth', token !== null ? 'token' : 'none (loopback only)'],
      ['tls', tls !== null ? 'on' : 'off'],
      ['data bytes', formatBytes(g.dataBytes)],
      ['max clients', `${g.maxClients} (one per connection)`],
      ['lease', `${server.pool.leaseMs} ms`],
      ['serving', `pid ${process.pid}; stop with SIGINT (Ctrl-C) or SIGTERM`],
    ]),
  );
  const signal = await untilSignal();
  await server.close();
  const removed = flags.removeOnExit ? removeShm(flags.pool) : false;
  out.result({ event: 'stopped', pool: flags.pool, signal, removed }, () => [`stopped on ${signal}${removed ? '; pool file removed' : ''}`]);
}
