// The `isolated` network of oci sandboxes: a network namespace per sandbox,
// wired to a bridge, reached from the host through a DNAT'd host port
// (Dirigent's containerd runtime does the same with CNI; reference/dirigent.md §5).
//
//   client ─▶ <worker host>:<host port> ──DNAT──▶ <sandbox ip>:8080 in its netns
//                                   bridge (oci.bridge, first address of oci.subnet)
//                                     ├─ veth ─ netns A (eth0 10.88.0.2, default via the bridge)
//                                     └─ veth ─ netns B (eth0 10.88.0.3)
//
// A slot is a namespace with its veth, address and default route (two
// `ip -batch` runs, 7–17 ms on this machine, DESIGN.md) plus a host port and
// the DNAT rule to it (one iptables run, ~20 ms here): all of it is made ahead
// into a pool (oci.networkPoolSize) and refilled in the background, so an
// isolated sandbox finds its network ready. A slot a sandbox used is
// destroyed, never reused: a fresh namespace carries nothing (sockets,
// conntrack, neighbours) from the previous tenant.
//
// Isolation between sandboxes, in two layers: every veth is a bridge port
// with `isolated on`, so the bridge forwards nothing between two sandboxes at
// layer 2, and with br_netfilter the filter chain drops bridge → bridge as
// well (which also stops the hairpin: sandbox A → the host port of B →
// DNAT → B). Sandboxes cannot open connections to the host either (INPUT
// from the bridge: only replies pass). They can reach other networks through
// MASQUERADE, as a container on Docker's bridge can.
//
// iptables, per worker, so that cleanup is removing its own chains:
//   nat    BATON-<tag>       ← PREROUTING and OUTPUT (destination is a local address): one DNAT per sandbox
//   nat    BATON-<tag>-POST  ← POSTROUTING: MASQUERADE 127.0.0.0/8 → subnet (loopback clients) and subnet → elsewhere
//   filter BATON-<tag>       ← FORWARD: drop bridge → bridge, accept DNAT'd and established traffic to the bridge, outbound from it
//   filter BATON-<tag>-IN    ← INPUT: from the bridge only replies
// A loopback client's packet, DNAT'd in OUTPUT, leaves through the bridge
// with a 127.0.0.1 source; the kernel drops such packets unless
// route_localnet is on, which is set on the bridge only (kube-proxy's
// setting on `all` exposed loopback services to the neighbours, CVE-2020-8558).
//
// Nothing of this exists until the first `isolated` sandbox: a worker that
// runs as root but never hosts one leaves the machine's network alone.
//
// Shared between workers on one machine: the bridge and the subnet. Addresses
// are leased with one file per address under /run/baton/net/<bridge>/ (an
// O_EXCL create, holding the worker's tag), so two workers never hand out the
// same one. The bridge is removed by the last worker to close, when nothing
// is attached to it, and only if a worker created it.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, open, readdir, readFile, rm, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BatonError } from '../../../shared/errors.js';
import type { Logger } from '../../../shared/logging.js';
import type { PortAllocator } from '../../ports.js';
import type { OciNames } from './names.js';
import { shortSeq } from './names.js';

/** The port a function listens on inside its own namespace. */
export const CONTAINER_PORT = 8080;
/** Where leases and markers live: a tmpfs, cleared on reboot like the namespaces themselves. */
const STATE_ROOT = '/run/baton/net';
const NETNS_DIR = '/run/netns';
const TOOL_ENV = { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' };

export interface NetworkTools {
  readonly ip: string;
  readonly iptables: string;
  readonly iptablesSave: string;
  readonly iptablesRestore: string;
}

export interface IsolatedNetworkOptions {
  readonly bridge: string;
  /** IPv4 CIDR, /16 to /24. */
  readonly subnet: string;
  readonly poolSize: number;
  readonly names: OciNames;
  /** The worker's bind host: DNAT matches it as the destination unless it is a wildcard. */
  readonly host: string;
  readonly tools: NetworkTools | undefined;
  /** Host ports: each slot holds one from its making to its destruction. */
  readonly ports: PortAllocator;
  /** Why the tools are missing. */
  readonly toolsMissing: string | undefined;
  readonly log: Logger;
}

/** A namespace ready for one sandbox: its veth on the bridge, its address and route, and a host port DNAT'd to it. */
export interface NetworkSlot {
  readonly netns: string;
  /** What config.json points the container's network namespace at. */
  readonly netnsPath: string;
  readonly ip: string;
  readonly hostVeth: string;
  /** <worker host>:hostPort reaches ip:CONTAINER_PORT. */
  readonly hostPort: number;
}

interface Subnet {
  readonly base: number;
  readonly prefix: number;
  readonly bridgeIp: string;
  /** First and last address a sandbox may get. */
  readonly first: number;
  readonly last: number;
  readonly cidr: string;
}

export function parseSubnet(cidr: string): Subnet {
  const [addr = '', bits = ''] = cidr.split('/');
  const prefix = Number(bits);
  const octets = addr.split('.').map(Number);
  if (octets.length !== 4 || octets.some((o) => !Number.isInteger(o) || o < 0 || o > 255) || !(prefix >= 8 && prefix <= 30)) {
    throw new BatonError('CONFIG_INVALID', `oci.subnet: "${cidr}" is not an IPv4 CIDR`);
  }
  const mask = prefix === 0 ? 0 : (~0 << (32 - prefix)) >>> 0;
  const base = ((octets.reduce((a, o) => a * 256 + o, 0) >>> 0) & mask) >>> 0;
  const broadcast = (base | (~mask >>> 0)) >>> 0;
  return { base, prefix, bridgeIp: ipString(base + 1), first: base + 2, last: broadcast - 1, cidr: `${ipString(base)}/${prefix}` };
}

export function ipString(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

/** Runs a tool with a clean environment and optional stdin; rejects with its stderr. */
function runTool(file: string, args: readonly string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(file, args, { env: TOOL_ENV, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${file} ${args.join(' ')}: ${stderr.trim() || err.message}`));
      else resolve(stdout);
    });
    if (input !== undefined) child.stdin?.end(input);
  });
}

export class IsolatedNetwork {
  private readonly subnet: Subnet;
  private readonly leaseDir: string;
  private setup: Promise<void> | undefined;
  private readonly pool: NetworkSlot[] = [];
  private filling: Promise<void> | undefined;
  /** Slots handed out and not yet released. */
  private readonly inUse = new Set<NetworkSlot>();
  /** Slots whose DNAT rule is in place. */
  private readonly exposed = new Set<NetworkSlot>();
  private seq = 0;
  private nextIp: number;
  private closed = false;

  constructor(private readonly options: IsolatedNetworkOptions) {
    this.subnet = parseSubnet(options.subnet);
    this.leaseDir = join(STATE_ROOT, options.bridge);
    this.nextIp = this.subnet.first;
  }

  private get chain(): string {
    return this.options.names.chain;
  }

  /** The address DNAT matches: the worker's bind host, or any local address for a wildcard bind. */
  private dnatDestination(): string[] {
    const h = this.options.host;
    if (h === '0.0.0.0' || h === '' || h === '::') return [];
    if (/^\d{1,3}(\.\d{1,3}){3}$/.test(h)) return ['-d', h];
    throw new BatonError(
      'SANDBOX_START_FAILED',
      `network "isolated" needs the worker's host to be an IPv4 address or 0.0.0.0 (iptables DNAT is IPv4), not "${h}"`,
      { details: { reason: 'network_failed' } },
    );
  }

  /**
   * Takes a slot for a sandbox: from the pool, or made now when the pool is
   * empty. Sets the network up on first use. The caller calls refill() once
   * its sandbox is up: refilling spawns `ip` and `iptables`, which would
   * compete with the sandbox's own start for the CPU.
   */
  async take(): Promise<{ slot: NetworkSlot; pooled: boolean }> {
    if (this.closed) throw new BatonError('UNAVAILABLE', 'the oci runtime is closing');
    await this.ensureSetup();
    let slot = this.pool.shift();
    const pooled = slot !== undefined;
    slot ??= await this.makeSlot();
    this.inUse.add(slot);
    return { slot, pooled };
  }

  private dnatRule(ip: string, hostPort: number): string[] {
    return [...this.dnatDestination(), '-p', 'tcp', '--dport', String(hostPort), '-j', 'DNAT', '--to-destination', `${ip}:${CONTAINER_PORT}`];
  }

  /** Destroys a slot a sandbox had (its DNAT rule, namespace, address, port). Never rejects; failures are logged. */
  async release(slot: NetworkSlot): Promise<void> {
    this.inUse.delete(slot);
    await this.destroySlot(slot);
    this.refill();
  }

  /** Pooled slots waiting for a sandbox. */
  get pooled(): number {
    return this.pool.length;
  }

  private async ensureSetup(): Promise<void> {
    if (!this.options.tools) {
      throw new BatonError('SANDBOX_START_FAILED', `network "isolated" is not available on this worker: ${this.options.toolsMissing ?? 'ip or iptables is missing'}`, {
        details: { reason: 'network_unavailable' },
      });
    }
    this.setup ??= this.runSetup().catch((err: unknown) => {
      this.setup = undefined;
      throw new BatonError('SANDBOX_START_FAILED', `cannot set up the isolated network (bridge ${this.options.bridge}): ${(err as Error).message}`, {
        cause: err,
        details: { reason: 'network_failed' },
      });
    });
    await this.setup;
    // Another worker sharing the bridge may have removed it when it closed.
    if (!existsSync(`/sys/class/net/${this.options.bridge}`)) await this.ensureBridge();
  }

  private async runSetup(): Promise<void> {
    const { names, bridge } = this.options;
    await mkdir(this.leaseDir, { recursive: true });
    await mkdir(join(STATE_ROOT, 'chains'), { recursive: true });
    await this.ensureBridge();
    // The marker first: a crash between here and the chains still gets them cleaned at the next start.
    await writeFile(join(STATE_ROOT, 'chains', names.tag), `${bridge} ${this.subnet.cidr}\n`);
    const c = this.chain;
    const s = this.subnet.cidr;
    await runTool(
      this.tools.iptablesRestore,
      ['-w', '--noflush'],
      [
        '*nat',
        `:${c} - [0:0]`,
        `:${c}-POST - [0:0]`,
        `-I PREROUTING -m addrtype --dst-type LOCAL -j ${c}`,
        `-I OUTPUT -m addrtype --dst-type LOCAL -j ${c}`,
        `-I POSTROUTING -j ${c}-POST`,
        `-A ${c}-POST -s 127.0.0.0/8 -d ${s} -j MASQUERADE`,
        `-A ${c}-POST -s ${s} ! -o ${bridge} -j MASQUERADE`,
        'COMMIT',
        '*filter',
        `:${c} - [0:0]`,
        `:${c}-IN - [0:0]`,
        `-I FORWARD -j ${c}`,
        `-I INPUT -j ${c}-IN`,
        `-A ${c} -i ${bridge} -o ${bridge} -j DROP`,
        `-A ${c} -o ${bridge} -m conntrack --ctstate RELATED,ESTABLISHED,DNAT -j ACCEPT`,
        `-A ${c} -i ${bridge} -j ACCEPT`,
        `-A ${c} -o ${bridge} -j DROP`,
        `-A ${c}-IN -i ${bridge} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`,
        `-A ${c}-IN -i ${bridge} -j DROP`,
        'COMMIT',
        '',
      ].join('\n'),
    );
    this.options.log.info({ bridge, subnet: s, chain: c }, 'oci: isolated network set up');
  }

  private async ensureBridge(): Promise<void> {
    const { bridge } = this.options;
    const cidr = `${this.subnet.bridgeIp}/${this.subnet.prefix}`;
    // Another worker that left may have removed the directory with the bridge.
    await mkdir(this.leaseDir, { recursive: true });
    if (!existsSync(`/sys/class/net/${bridge}`)) {
      // The marker says a worker made it, so the last one to leave may remove it.
      await writeFile(join(this.leaseDir, 'created'), '');
      try {
        await runTool(this.tools.ip, ['link', 'add', bridge, 'type', 'bridge']);
      } catch (err) {
        // Another worker made it at the same moment.
        if (!existsSync(`/sys/class/net/${bridge}`)) throw err;
      }
    }
    const addresses = await runTool(this.tools.ip, ['-o', '-4', 'addr', 'show', 'dev', bridge]);
    if (!addresses.includes(` ${cidr} `)) {
      await runTool(this.tools.ip, ['addr', 'add', cidr, 'dev', bridge]).catch((err: unknown) => {
        if (!/File exists/.test((err as Error).message)) throw err;
      });
    }
    // No IPv6 on the bridge: the filter chains are IPv4 only, and a sandbox could
    // otherwise reach the host's services bound to :: over link-local addresses.
    if (existsSync(`/proc/sys/net/ipv6/conf/${bridge}/disable_ipv6`)) await writeFile(`/proc/sys/net/ipv6/conf/${bridge}/disable_ipv6`, '1');
    await runTool(this.tools.ip, ['link', 'set', bridge, 'up']);
    // ip_forward: DNAT'd traffic from other hosts and sandboxes' outbound traffic are forwarded.
    // route_localnet here, every time: a bridge made again (another worker removed it) starts without it.
    await writeFile('/proc/sys/net/ipv4/ip_forward', '1');
    await writeFile(`/proc/sys/net/ipv4/conf/${bridge}/route_localnet`, '1');
  }

  private get tools(): NetworkTools {
    const tools = this.options.tools;
    if (!tools) throw new Error('ip or iptables is missing');
    return tools;
  }

  private iptables(args: readonly string[]): Promise<string> {
    return runTool(this.tools.iptables, ['-w', ...args]);
  }

  /** Fills the pool up to poolSize, one slot at a time, in the background. */
  refill(): void {
    if (this.closed || this.filling || this.pool.length >= this.options.poolSize || !this.setup) return;
    this.filling = (async () => {
      try {
        while (!this.closed && this.pool.length < this.options.poolSize) {
          const slot = await this.makeSlot();
          if (this.closed) {
            await this.destroySlot(slot);
            break;
          }
          this.pool.push(slot);
        }
      } catch (err) {
        this.options.log.warn({ err }, 'oci: cannot refill the network namespace pool');
      } finally {
        this.filling = undefined;
      }
    })();
  }

  /** Waits until the pool holds poolSize slots (or refilling failed). */
  async filled(): Promise<void> {
    await this.setup;
    this.refill();
    await this.filling;
  }

  private async makeSlot(): Promise<NetworkSlot> {
    const { names, bridge } = this.options;
    const id = shortSeq(this.seq++);
    const netns = `${names.netnsPrefix}${id}`;
    const hostVeth = `${names.vethPrefix}${id}`;
    // A host that DNAT cannot match fails here, before anything is made.
    this.dnatDestination();
    const hostPort = await this.options.ports.allocate();
    let ip: string;
    try {
      ip = await this.leaseIp();
    } catch (err) {
      this.options.ports.release(hostPort);
      throw err;
    }
    const slot: NetworkSlot = { netns, netnsPath: join(NETNS_DIR, netns), ip, hostVeth, hostPort };
    try {
      await runTool(
        this.tools.ip,
        ['-batch', '-'],
        [
          `netns add ${netns}`,
          `link add ${hostVeth} type veth peer name eth0 netns ${netns}`,
          `link set ${hostVeth} master ${bridge}`,
          `link set ${hostVeth} type bridge_slave isolated on`,
          // No link-local IPv6 on either end (the bridge has none either): IPv4 only, as the filters.
          `link set ${hostVeth} addrgenmode none`,
          `link set ${hostVeth} up`,
          '',
        ].join('\n'),
      );
      await runTool(
        this.tools.ip,
        ['-n', netns, '-batch', '-'],
        [`addr add ${ip}/${this.subnet.prefix} dev eth0`, 'link set eth0 addrgenmode none', 'link set eth0 up', 'link set lo up', `route add default via ${this.subnet.bridgeIp}`, ''].join(
          '\n',
        ),
      );
      await this.iptables(['-t', 'nat', '-A', this.chain, ...this.dnatRule(ip, hostPort)]);
      this.exposed.add(slot);
    } catch (err) {
      await this.destroySlot(slot);
      throw err;
    }
    return slot;
  }

  private async destroySlot(slot: NetworkSlot): Promise<void> {
    if (this.exposed.delete(slot)) {
      await this.iptables(['-t', 'nat', '-D', this.chain, ...this.dnatRule(slot.ip, slot.hostPort)]).catch((err: unknown) =>
        this.options.log.warn({ err, netns: slot.netns, hostPort: slot.hostPort }, 'oci: cannot remove a DNAT rule'),
      );
    }
    // Deleting the namespace destroys its end of the veth, and with it the pair.
    if (existsSync(slot.netnsPath)) {
      await runTool(this.tools.ip, ['netns', 'del', slot.netns]).catch((err: unknown) =>
        this.options.log.warn({ err, netns: slot.netns }, 'oci: cannot delete a network namespace'),
      );
    }
    if (existsSync(`/sys/class/net/${slot.hostVeth}`)) {
      await runTool(this.tools.ip, ['link', 'del', slot.hostVeth]).catch(() => undefined);
    }
    await unlink(join(this.leaseDir, slot.ip)).catch(() => undefined);
    this.options.ports.release(slot.hostPort);
  }

  /** Leases a free address of the subnet: an O_EXCL file per address, shared by every worker on the machine. */
  private async leaseIp(): Promise<string> {
    await mkdir(this.leaseDir, { recursive: true });
    const size = this.subnet.last - this.subnet.first + 1;
    for (let i = 0; i < size; i++) {
      const n = this.nextIp;
      this.nextIp = n >= this.subnet.last ? this.subnet.first : n + 1;
      const ip = ipString(n);
      try {
        const handle = await open(join(this.leaseDir, ip), 'wx');
        await handle.writeFile(this.options.names.tag);
        await handle.close();
        return ip;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
    }
    throw new Error(`no free address left in ${this.subnet.cidr}`);
  }

  /**
   * Destroys the pool and the chains, and the bridge when a worker created it
   * and nothing is attached any more. Slots still in use are destroyed too.
   */
  async close(): Promise<void> {
    this.closed = true;
    await this.filling;
    const slots = [...this.pool.splice(0), ...this.inUse];
    this.inUse.clear();
    if (!this.setup) return;
    await this.setup.catch(() => undefined);
    await Promise.all(slots.map((s) => this.destroySlot(s)));
    await removeChains(this.tools, this.options.names, this.options.log);
    await removeBridgeIfUnused(this.tools, this.options.bridge, this.options.log);
  }
}

/** Removes the nat and filter chains of a worker (and the jumps to them), whatever state they are in. */
export async function removeChains(tools: NetworkTools, names: OciNames, log: Logger): Promise<void> {
  const marker = join(STATE_ROOT, 'chains', names.tag);
  const ours = new Set([names.chain, `${names.chain}-POST`, `${names.chain}-IN`]);
  try {
    const batch: string[] = [];
    for (const table of ['nat', 'filter']) {
      const saved = await runTool(tools.iptablesSave, ['-t', table]);
      const deletes: string[] = [];
      const chains: string[] = [];
      for (const line of saved.split('\n')) {
        const chainDecl = /^:(\S+) /.exec(line);
        if (chainDecl?.[1] && ours.has(chainDecl[1])) chains.push(chainDecl[1]);
        const jump = /^-A (\S+) (.*-j (\S+).*)$/.exec(line);
        if (jump?.[1] && jump[3] && !ours.has(jump[1]) && ours.has(jump[3])) deletes.push(`-D ${jump[1]} ${jump[2]}`);
      }
      if (deletes.length === 0 && chains.length === 0) continue;
      batch.push(`*${table}`, ...deletes, ...chains.map((c) => `-F ${c}`), ...chains.map((c) => `-X ${c}`), 'COMMIT');
    }
    if (batch.length > 0) await runTool(tools.iptablesRestore, ['-w', '--noflush'], `${batch.join('\n')}\n`);
    await rm(marker, { force: true });
  } catch (err) {
    log.warn({ err, chain: names.chain }, 'oci: cannot remove the iptables chains');
  }
}

async function removeBridgeIfUnused(tools: NetworkTools, bridge: string, log: Logger): Promise<void> {
  const leaseDir = join(STATE_ROOT, bridge);
  if (!existsSync(join(leaseDir, 'created'))) return;
  const ports = await readdir(`/sys/class/net/${bridge}/brif`).catch(() => [] as string[]);
  const leases = (await readdir(leaseDir).catch(() => [] as string[])).filter((f) => f !== 'created');
  if (ports.length > 0 || leases.length > 0) return;
  try {
    if (existsSync(`/sys/class/net/${bridge}`)) await runTool(tools.ip, ['link', 'del', bridge]);
    await rm(leaseDir, { recursive: true, force: true });
  } catch (err) {
    log.warn({ err, bridge }, 'oci: cannot remove the bridge');
  }
}

/**
 * Removes what an earlier run of a worker left (it crashed or was killed):
 * its namespaces, address leases and chains, and the bridge if a worker made
 * it and nothing uses it any more. Looks before it runs anything, so with
 * nothing left behind it spawns no process.
 */
export async function cleanNetworkLeftovers(tools: NetworkTools | undefined, names: OciNames, bridge: string, log: Logger): Promise<void> {
  const netns = (await readdir(NETNS_DIR).catch(() => [] as string[])).filter((n) => n.startsWith(names.netnsPrefix));
  const hasChains = existsSync(join(STATE_ROOT, 'chains', names.tag));
  if (!tools) {
    if (netns.length > 0 || hasChains) log.warn({ netns }, 'oci: an earlier run left network namespaces or chains, and ip/iptables are missing to remove them');
    return;
  }
  for (const n of netns) {
    await runTool(tools.ip, ['netns', 'del', n]).catch((err: unknown) => log.warn({ err, netns: n }, 'oci: cannot delete a leftover network namespace'));
  }
  const leaseDir = join(STATE_ROOT, bridge);
  for (const file of await readdir(leaseDir).catch(() => [] as string[])) {
    if (file === 'created') continue;
    const owner = await readFile(join(leaseDir, file), 'utf8').catch(() => '');
    if (owner === names.tag) await unlink(join(leaseDir, file)).catch(() => undefined);
  }
  if (hasChains) await removeChains(tools, names, log);
  await removeBridgeIfUnused(tools, bridge, log);
  if (netns.length > 0 || hasChains) log.info({ netns: netns.length, chains: hasChains }, 'oci: removed the network leftovers of an earlier run');
}
