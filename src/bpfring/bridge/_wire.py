"""The map bridge's wire format and control words, shared by the ring
queue, the syscall fallback and the public class: what
``include/bpfring/bridge.bpf.h`` declares on the BPF side (checked against
that header's BTF in tests/test_abi.py)."""

from __future__ import annotations

import errno as _errno
import struct
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import numpy as np
import numpy.typing as npt

from .. import _sys
from .._ringcore import HDR_SIZE

Rows = npt.NDArray[Any]

#: Update flags (``BPF_ANY``, ``BPF_NOEXIST``, ``BPF_EXIST``, ``BPF_F_LOCK``).
ANY, NOEXIST, EXIST, F_LOCK = 0, 1, 2, 4

OP_UPDATE = 1
OP_DELETE = 2
OP_NAMES = {OP_UPDATE: "update", OP_DELETE: "delete"}

#: ``struct bpfring_bridge_op``: op, flags, key_size, value_size, count, reserved.
OP_HDR = struct.Struct("<BBHIII")
#: A sample's ring header (8 bytes) and op header: the overhead of every sample.
REC_HDR_SIZE = HDR_SIZE + OP_HDR.size  # 24
#: ``BPFRING_BRIDGE_DATA_MAX``: entry bytes in one sample.
DATA_MAX = 32768
#: ``struct bpfring_bridge_result``.
RESULT = struct.Struct("<QiBBH")
#: ``struct bpfring_bridge_flush``.
FLUSH_CTX = struct.Struct("<qQQQq")

#: ``struct bpfring_bridge_state``: the u64 counters, in order, then u32 control words.
STATE_FIELDS = (
    "seq", "applied", "updated", "deleted", "err_noent", "err_exist", "err_2big",
    "err_nomem", "err_inval", "err_other", "bad", "batches", "drains", "drain_busy",
    "drain_errors", "last_error", "timer_ticks",
)
STATE_SIZE = 24 * 8 + 8 * 4
CTL_WANT_WAKEUP = 48  # u32 index of want_wakeup
CTL_REPORT = 49
CTL_BUDGET = 50
ERR_FIELDS = {
    _errno.ENOENT: "err_noent", _errno.EEXIST: "err_exist", _errno.E2BIG: "err_2big",
    _errno.ENOMEM: "err_nomem", _errno.EINVAL: "err_inval",
}
REPORT = {None: 0, "failures": 1, "all": 2}

#: Map types a bridge can target (see the header for why these).
SUPPORTED_MAP_TYPES = frozenset({
    _sys.MAP_TYPE_HASH, _sys.MAP_TYPE_ARRAY, _sys.MAP_TYPE_PERCPU_HASH,
    _sys.MAP_TYPE_PERCPU_ARRAY, _sys.MAP_TYPE_LRU_HASH, _sys.MAP_TYPE_LRU_PERCPU_HASH,
})
ARRAY_TYPES = frozenset({_sys.MAP_TYPE_ARRAY, _sys.MAP_TYPE_PERCPU_ARRAY})
WAIT_SLICE = 0.005  # longest single epoll wait: a missed wakeup costs at most this
FALLBACK_QUEUE_MAX = 65536  # operations the fallback keeps before applying them anyway


Mode = Literal["flush", "piggyback", "timer"]



class OpResult(NamedTuple):
    """Outcome of one queued operation, from the results ring (``report=...``)."""

    seq: int  #: index of the operation, as returned by update()/delete()
    op: str  #: "update", "delete" or "bad"
    flags: int  #: the update flags it carried
    errno: int  #: 0 on success, else the positive errno (EEXIST, ENOENT, E2BIG, ...)

    @property
    def ok(self) -> bool:
        return self.errno == 0


class FlushResult(NamedTuple):
    """What one :meth:`MapBridge.flush` did."""

    drained: int  #: operations consumed
    applied: int  #: ... that succeeded
    failed: int  #: ... that the map refused (counted by errno in :attr:`MapBridge.stats`)
    bad: int  #: ... that were malformed (never happens with MapBridge as the producer)


@dataclass(frozen=True)
class BridgeStats:
    """Counters of one bridge (kept by the kernel drain; in Python on the fallback)."""

    queued: int  #: operations this MapBridge queued since it was created
    consumed: int  #: operations the drain consumed since the bridge was loaded
    applied: int
    updated: int
    deleted: int
    failed: int
    errors: dict[str, int] = field(default_factory=dict)  #: failures by errno name
    bad: int = 0
    batches: int = 0  #: drains (or fallback flushes) that applied at least one operation
    drains: int = 0
    drain_busy: int = 0  #: drains that found another drain running
    drain_errors: int = 0
    last_error: int = 0  #: last negative errno seen
    timer_ticks: int = 0
    pending: int = 0  #: operations queued by this MapBridge and not consumed yet
    results_lost: int = 0  #: per-operation results that did not fit in the results ring




def byte_rows(a: Rows) -> Rows:
    """Rows from :meth:`ElementCodec.rows` as an (n, size) uint8 array (a view)."""
    return a.view(np.uint8).reshape(len(a), -1)


