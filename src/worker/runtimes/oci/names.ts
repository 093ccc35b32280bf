// Names of everything an `oci` runtime makes on the machine: runc container
// ids, cgroups, network namespaces, veths, iptables chains, directories.
//
// Several workers may share a machine, a runc state directory and a bridge
// (`baton up --workers 2` runs two in one process with one config), and a
// restarted worker must find what its previous run left. So every name starts
// with a fixed-length tag derived from the worker id: `baton-<tag>-` can never
// be the prefix of another worker's names, whatever the ids look like, and it
// is short enough for interface names (15 characters) and chain names (28).
import { createHash } from 'node:crypto';

/** The tag's length in hex digits: 8 gives 4 billion workers before a collision is even likely. */
const TAG_LENGTH = 8;

export interface OciNames {
  /** 8 hex digits from the worker id. */
  readonly tag: string;
  /** The worker id made safe for a path segment. */
  readonly workerDir: string;
  /** What every runc container id of this worker starts with. */
  readonly containerPrefix: string;
  /** The cgroup (relative to each hierarchy's root) that holds every container of this worker. */
  readonly cgroupParent: string;
  /** What every network namespace of this worker starts with (under /run/netns). */
  readonly netnsPrefix: string;
  /** What every host-side veth of this worker starts with: 2 + 6 characters, 7 left for a counter. */
  readonly vethPrefix: string;
  /** The iptables chains: the same name in the nat and filter tables, plus `-POST` (nat) and `-IN` (filter). */
  readonly chain: string;
}

export function ociNames(workerId: string): OciNames {
  const tag = createHash('sha256').update(workerId).digest('hex').slice(0, TAG_LENGTH);
  return {
    tag,
    workerDir: safeSegment(workerId),
    containerPrefix: `baton-${tag}-`,
    cgroupParent: `/baton-${tag}`,
    netnsPrefix: `baton-${tag}-`,
    vethPrefix: `bt${tag.slice(0, 6)}`,
    chain: `BATON-${tag.toUpperCase()}`,
  };
}

/** A string made safe for a runc container id, a file name and a cgroup name: [A-Za-z0-9_.-], not starting with a dot. */
export function safeSegment(text: string): string {
  const safe = text.replace(/[^A-Za-z0-9_.-]/g, '_').replace(/^\.+/, '_');
  return safe.length > 0 ? safe : '_';
}

/** A counter in base 36, for names that must stay short. */
export function shortSeq(n: number): string {
  return n.toString(36);
}
