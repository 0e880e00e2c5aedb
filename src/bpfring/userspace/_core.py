"""CO-RE relocations resolved against a target BTF (the running kernel's),
with libbpf's semantics, for the user-space loader.

A CO-RE record (``.BTF.ext``) names an instruction, a *local* type (in the
object's BTF), an access string (``"0:1:2"``: an array index on the root,
then member and array indexes) and a kind (``enum bpf_core_relo_kind``).
Resolving it:

1. the local spec is parsed from the access string (named accessors, bit
   offset) -- the values clang compiled in are those of the local spec, and
   each is checked against the instruction as libbpf validates them;
2. candidates are the target types of the local type's kind whose name
   equals the local name's *essential* part (``task_struct___x`` ->
   ``task_struct``); each is matched (members by name through anonymous
   members, array bounds, field type compatibility; type compatibility or
   ``bpf_core_type_matches``'s stricter rules; enumerators by essential name);
3. every matching candidate must give the same answer (else: ambiguous, a
   load error); the instruction's immediate, offset (and load/store size when
   an unsigned integer or pointer changed width) is rewritten.

No matching candidate: existence kinds give 0, ``type_size``/``type_id_target``
0, and the other kinds (field offset/size/signedness/shifts, enum value)
*poison* the instruction, as libbpf does: it becomes a call of helper
:data:`POISON` (both halves of an ``ld_imm64``).  Code guarded by an
existence check never reaches it; reaching it raises ``UserRuntimeError``
naming the relocation.  Everything else that libbpf refuses (a malformed
access string, an instruction that does not hold the compiled-in value, an
offset over 32767, an ambiguous match) is a :class:`UserLoadError` naming the
relocation.  Kernel module BTF is not searched (vmlinux only).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..btf import BTF, Kind
from ..btf._model import Type
from ..errors import BTFError
from . import _isa
from ._errors import UserLoadError
from ._isa import Insn

__all__ = ["POISON", "CoreRelo", "apply_core", "essential_name"]

#: The helper id libbpf writes into a poisoned instruction (0xbad2310).
POISON = 0xBAD2310

FIELD_BYTE_OFFSET, FIELD_BYTE_SIZE, FIELD_EXISTS, FIELD_SIGNED = 0, 1, 2, 3
FIELD_LSHIFT_U64, FIELD_RSHIFT_U64, TYPE_ID_LOCAL, TYPE_ID_TARGET = 4, 5, 6, 7
TYPE_EXISTS, TYPE_SIZE, ENUMVAL_EXISTS, ENUMVAL_VALUE, TYPE_MATCHES = 8, 9, 10, 11, 12
_FIELD_KINDS = frozenset(range(0, 6))
_TYPE_KINDS = frozenset({TYPE_ID_LOCAL, TYPE_ID_TARGET, TYPE_EXISTS, TYPE_SIZE, TYPE_MATCHES})
_ENUM_KINDS = frozenset({ENUMVAL_EXISTS, ENUMVAL_VALUE})
_COMPOSITE = (Kind.STRUCT, Kind.UNION)
_ENUMS = (Kind.ENUM, Kind.ENUM64)
_MAX_SPEC = 64  # BPF_CORE_SPEC_MAX_LEN
_MAX_DEPTH = 32  # how deep type comparisons recurse


@dataclass
class CoreRelo:
    """One CO-RE record: where (section, index), what (kind, type, access)."""

    section: str
    sec_index: int
    insn: int
    type_id: int
    access: str
    kind: int
    number: int  # position among the object's records (libbpf's relo #)


class _Unresolved(Exception):
    """This relocation's instruction is poisoned (libbpf's -EUCLEAN)."""


class _Bad(Exception):
    """A record or candidate libbpf refuses (-EINVAL and friends)."""


@dataclass
class _Acc:
    type_id: int  # composite (named accessor) or element type (array index)
    idx: int
    name: str = ""  # member / enumerator name; "" for an array index


@dataclass
class _Spec:
    btf: BTF
    root_id: int
    accs: list[_Acc] = field(default_factory=list)
    raw: list[int] = field(default_factory=list)
    bit_offset: int = 0


def essential_name(name: str) -> str:
    """A name without its ``___flavour`` suffix (libbpf's essential name): the
    last ``X___Y`` separator where X and Y are not underscores."""
    for i in range(len(name) - 5, -1, -1):
        s = name[i:i + 5]
        if s[0] != "_" and s[1:4] == "___" and s[4] != "_":
            return name[:i + 1]
    return name


def _strip(btf: BTF, tid: int) -> tuple[int, Type]:
    t = btf.resolve(tid)
    return t.id, t


def _bitfield_size(t: Type, idx: int) -> int:
    return t.members[idx].bitfield_size if t.kind_flag else 0


# ------------------------------------------------------------------------ specs


def _parse_spec(btf: BTF, relo: CoreRelo) -> _Spec:
    spec = _Spec(btf, relo.type_id)
    try:
        spec.raw = [int(p) for p in relo.access.split(":")]
    except ValueError:
        raise _Bad(f"access string {relo.access!r} is malformed") from None
    if not spec.raw or len(spec.raw) > _MAX_SPEC or min(spec.raw) < 0:
        raise _Bad(f"access string {relo.access!r} is malformed")
    if relo.kind in _TYPE_KINDS:
        if spec.raw != [0]:
            raise _Bad(f"type relocation with access string {relo.access!r}")
        return spec
    tid, t = _strip(btf, relo.type_id)
    idx = spec.raw[0]
    spec.accs.append(_Acc(tid, idx))
    if relo.kind in _ENUM_KINDS:
        if t.kind not in _ENUMS or len(spec.raw) > 1 or idx >= len(t.enumerators):
            raise _Bad(f"enum value relocation on {btf.type_str(relo.type_id)} with access "
                       f"{relo.access!r}")
        spec.accs[0].name = t.enumerators[idx].name
        return spec
    spec.bit_offset = idx * btf.sizeof(tid) * 8
    for idx in spec.raw[1:]:
        tid, t = _strip(btf, tid)
        if t.kind in _COMPOSITE:
            if idx >= len(t.members):
                raise _Bad(f"member {idx} of {btf.type_str(tid)}: none")
            m = t.members[idx]
            spec.bit_offset += m.bit_offset
            if m.name:
                spec.accs.append(_Acc(tid, idx, m.name))
            tid = m.type_id
        elif t.kind == Kind.ARRAY:
            prev = spec.accs[-1]
            tid, _ = _strip(btf, t.elem_type_id)
            if not _is_flex(btf, prev, t) and idx >= t.nelems:
                raise _Bad(f"index {idx} past the end of {btf.type_str(t.id)}")
            spec.accs.append(_Acc(tid, idx))
            spec.bit_offset += idx * btf.sizeof(tid) * 8
        else:
            raise _Bad(f"access {relo.access!r} goes into {btf.type_str(tid)}, not a struct, "
                       "union or array")
    return spec


def _is_flex(btf: BTF, prev: _Acc, arr: Type) -> bool:
    """A zero-sized array that is the last member of its struct."""
    if not prev.name or arr.nelems > 0:
        return False
    return prev.idx == len(btf.type_by_id(prev.type_id).members) - 1


def _spec_text(spec: _Spec, kind: int) -> str:
    """``struct task_struct.pid`` / ``enum xdp_action::XDP_TX`` / ``struct x``."""
    root = spec.btf.type_str(spec.root_id)
    if kind in _ENUM_KINDS:
        return f"{root}::{spec.accs[0].name}"
    if kind in _TYPE_KINDS:
        return root
    parts = [root]
    for a in spec.accs[1:]:
        parts.append(f".{a.name}" if a.name else f"[{a.idx}]")
    return "".join(parts)


# ------------------------------------------------------------------ matching


def _names_match(local: str, targ: str) -> bool:
    """bpf_core_names_match: an anonymous target matches an anonymous local only."""
    if not targ:
        return not local
    return essential_name(local) == essential_name(targ)


def _names_compat(local: str, targ: str) -> bool:
    """Field compatibility of enums and forward declarations: either anonymous,
    or the same essential name."""
    return not local or not targ or essential_name(local) == essential_name(targ)


def _fields_compat(lb: BTF, lid: int, tb: BTF, tid: int) -> bool:
    for _ in range(_MAX_DEPTH):
        lid, lt = _strip(lb, lid)
        tid, tt = _strip(tb, tid)
        if lt.kind in _COMPOSITE and tt.kind in _COMPOSITE:
            return True
        if lt.kind in _ENUMS and tt.kind in _ENUMS:
            return _names_compat(lt.name, tt.name)
        if lt.kind != tt.kind:
            return False
        if lt.kind in (Kind.PTR, Kind.FLOAT):
            return True
        if lt.kind == Kind.FWD:
            return _names_compat(lt.name, tt.name)
        if lt.kind == Kind.INT:
            return lt.int_offset == 0 and tt.int_offset == 0
        if lt.kind == Kind.ARRAY:
            lid, tid = lt.elem_type_id, tt.elem_type_id
            continue
        return False
    return False


def _types_compat(lb: BTF, lid: int, tb: BTF, tid: int, depth: int = _MAX_DEPTH) -> bool:
    for _ in range(depth):
        lid, lt = _strip(lb, lid)
        tid, tt = _strip(tb, tid)
        if lt.kind in _ENUMS and tt.kind in _ENUMS:
            return True
        if lt.kind != tt.kind:
            return False
        if lt.kind in (Kind.UNKN, Kind.STRUCT, Kind.UNION, Kind.FWD, Kind.FLOAT):
            return True
        if lt.kind == Kind.INT:
            return lt.int_offset == 0 and tt.int_offset == 0
        if lt.kind == Kind.PTR:
            lid, tid = lt.type_id, tt.type_id
            continue
        if lt.kind == Kind.ARRAY:
            lid, tid = lt.elem_type_id, tt.elem_type_id
            continue
        if lt.kind == Kind.FUNC_PROTO:
            if len(lt.params) != len(tt.params) or depth <= 1:
                return False
            if not all(_types_compat(lb, p.type_id, tb, q.type_id, depth - 1)
                       for p, q in zip(lt.params, tt.params, strict=True)):
                return False
            lid, tid = lt.type_id, tt.type_id
            continue
        return False
    return False


def _types_match(lb: BTF, lid: int, tb: BTF, tid: int, behind_ptr: bool = False,
                 depth: int = _MAX_DEPTH) -> bool:
    """``bpf_core_type_matches``: same names, same members (a subset, by name,
    recursively), same enumerators and values, same int size and sign."""
    while depth > 0:
        depth -= 1
        lid, lt = _strip(lb, lid)
        tid, tt = _strip(tb, tid)
        if not _names_match(lt.name, tt.name):
            return False
        lk, tk = lt.kind, tt.kind
        if lk == Kind.UNKN:
            return tk == Kind.UNKN
        if lk == Kind.FWD:
            if behind_ptr and lk != tk:
                return (tk == Kind.STRUCT and not lt.kind_flag) or \
                    (tk == Kind.UNION and lt.kind_flag)
            return lk == tk and lt.kind_flag == tt.kind_flag
        if lk in _ENUMS:
            if tk not in _ENUMS or lt.size != tt.size:
                return False
            values = {e.name: e.value & 0xFFFF_FFFF_FFFF_FFFF for e in tt.enumerators}
            return all(values.get(e.name) == e.value & 0xFFFF_FFFF_FFFF_FFFF
                       for e in lt.enumerators)
        if lk in _COMPOSITE:
            if behind_ptr:
                if lk == tk:
                    return True
                return tk == Kind.FWD and (lk == Kind.UNION) == tt.kind_flag
            if lk != tk or len(lt.members) > len(tt.members):
                return False
            by_name = {m.name: m for m in tt.members}
            for m in lt.members:
                other = by_name.get(m.name)
                if other is None or not _types_match(lb, m.type_id, tb, other.type_id,
                                                     behind_ptr, depth):
                    return False
            return True
        if lk != tk:
            return False
        if lk == Kind.INT:
            return lt.size == tt.size and lt.signed == tt.signed
        if lk == Kind.PTR:
            behind_ptr = True
            lid, tid = lt.type_id, tt.type_id
            continue
        if lk == Kind.ARRAY:
            if lt.nelems != tt.nelems:
                return False
            lid, tid = lt.elem_type_id, tt.elem_type_id
            continue
        if lk == Kind.FUNC_PROTO:
            if len(lt.params) != len(tt.params):
                return False
            if not all(_types_match(lb, p.type_id, tb, q.type_id, behind_ptr, depth)
                       for p, q in zip(lt.params, tt.params, strict=True)):
                return False
            lid, tid = lt.type_id, tt.type_id
            continue
        return False
    return False


def _match_member(local: _Spec, acc: _Acc, tb: BTF, tid: int, spec: _Spec
                  ) -> tuple[bool, int]:
    """Find ``acc``'s member by name in target composite ``tid`` (through
    anonymous members); on success the accessor is pushed, bit offset and raw
    spec updated, and the member's type id returned."""
    tid, tt = _strip(tb, tid)
    if tt.kind not in _COMPOSITE:
        return False, 0
    lmember = local.btf.type_by_id(acc.type_id).members[acc.idx]
    for i, m in enumerate(tt.members):
        if len(spec.raw) >= _MAX_SPEC:
            raise _Bad("access nested too deep")
        spec.bit_offset += m.bit_offset
        spec.raw.append(i)
        if not m.name:
            found, next_id = _match_member(local, acc, tb, m.type_id, spec)
            if found:
                return True, next_id
        elif m.name == lmember.name:
            if _fields_compat(local.btf, lmember.type_id, tb, m.type_id):
                spec.accs.append(_Acc(tid, i, m.name))
                return True, m.type_id
            return False, 0
        spec.bit_offset -= m.bit_offset
        spec.raw.pop()
    return False, 0


def _match(local: _Spec, kind: int, tb: BTF, tid: int) -> _Spec | None:
    spec = _Spec(tb, tid)
    if kind in _TYPE_KINDS:
        ok = _types_match(local.btf, local.root_id, tb, tid) if kind == TYPE_MATCHES else \
            _types_compat(local.btf, local.root_id, tb, tid)
        return spec if ok else None
    if kind in _ENUM_KINDS:
        tid, tt = _strip(tb, tid)
        if tt.kind not in _ENUMS:
            return None
        want = essential_name(local.accs[0].name)
        for i, e in enumerate(tt.enumerators):
            if essential_name(e.name) == want:
                spec.accs.append(_Acc(tid, i, e.name))
                spec.raw.append(i)
                return spec
        return None
    for i, acc in enumerate(local.accs):
        if acc.name:
            found, tid = _match_member(local, acc, tb, tid, spec)
            if not found:
                return None
            continue
        if i > 0:
            tid, tt = _strip(tb, tid)
            if tt.kind != Kind.ARRAY:
                return None
            if not _is_flex(tb, spec.accs[-1], tt) and acc.idx >= tt.nelems:
                return None
            tid, _ = _strip(tb, tt.elem_type_id)
        if len(spec.raw) >= _MAX_SPEC:
            raise _Bad("access nested too deep")
        spec.accs.append(_Acc(tid, acc.idx))
        spec.raw.append(acc.idx)
        spec.bit_offset += acc.idx * tb.sizeof(tid) * 8
    return spec


# ----------------------------------------------------------------- values


@dataclass
class _Value:
    value: int = 0
    size: int = 0  # field byte size for a load/store (byte offset kind)
    type_id: int = 0  # the field's type (byte offset kind)
    validate: bool = True


def _field_value(spec: _Spec | None, kind: int) -> _Value:
    if kind == FIELD_EXISTS:
        return _Value(1 if spec is not None else 0)
    if spec is None:
        raise _Unresolved
    btf = spec.btf
    acc = spec.accs[-1]
    if not acc.name:  # an array element
        if kind not in (FIELD_BYTE_OFFSET, FIELD_BYTE_SIZE):
            raise _Bad("relocation of this kind cannot apply to an array element")
        size = btf.sizeof(acc.type_id)
        if kind == FIELD_BYTE_OFFSET:
            return _Value(spec.bit_offset // 8, size, acc.type_id)
        return _Value(size)
    t = btf.type_by_id(acc.type_id)
    m = t.members[acc.idx]
    ftid, mt = _strip(btf, m.type_id)
    bit_off = spec.bit_offset
    bit_sz = _bitfield_size(t, acc.idx)
    bitfield = bit_sz > 0
    if bitfield:
        byte_sz = mt.size
        byte_off = bit_off // 8 // byte_sz * byte_sz
        while bit_off + bit_sz - byte_off * 8 > byte_sz * 8:
            if byte_sz >= 8:
                raise _Bad("bitfield cannot be read with a 64-bit load")
            byte_sz *= 2
            byte_off = bit_off // 8 // byte_sz * byte_sz
    else:
        byte_sz = btf.sizeof(ftid)
        byte_off = bit_off // 8
        bit_sz = byte_sz * 8
    v = _Value(validate=not bitfield)
    if kind == FIELD_BYTE_OFFSET:
        v.value = byte_off
        if not bitfield:
            v.size, v.type_id = byte_sz, ftid
    elif kind == FIELD_BYTE_SIZE:
        v.value = byte_sz
    elif kind == FIELD_SIGNED:
        v.value = int((mt.kind in _ENUMS and mt.kind_flag) or
                      (mt.kind == Kind.INT and mt.signed))
        if mt.kind in _ENUMS:
            v.validate = False  # clang's answer for an unmarked enum may differ
    elif kind == FIELD_LSHIFT_U64:
        v.value = 64 - (bit_off + bit_sz - byte_off * 8)
    else:  # FIELD_RSHIFT_U64
        v.value = 64 - bit_sz
        v.validate = True
    return v


def _type_value(spec: _Spec | None, kind: int) -> _Value:
    if spec is None:
        return _Value(0)
    if kind == TYPE_ID_TARGET:
        return _Value(spec.root_id)
    if kind in (TYPE_EXISTS, TYPE_MATCHES):
        return _Value(1)
    return _Value(spec.btf.sizeof(spec.root_id))  # TYPE_SIZE


def _enum_value(spec: _Spec | None, kind: int) -> _Value:
    if kind == ENUMVAL_EXISTS:
        return _Value(1 if spec is not None else 0)
    if spec is None:
        raise _Unresolved
    acc = spec.accs[0]
    t = spec.btf.type_by_id(acc.type_id)
    val = t.enumerators[acc.idx].value
    if t.kind == Kind.ENUM:  # btf_enum's s32 value, sign-extended to 64 bits
        val &= 0xFFFF_FFFF
        val = val - (1 << 32) if val >> 31 else val
    return _Value(val & 0xFFFF_FFFF_FFFF_FFFF)


def _value(spec: _Spec | None, kind: int) -> _Value:
    if kind in _FIELD_KINDS:
        return _field_value(spec, kind)
    if kind in _TYPE_KINDS:
        return _type_value(spec, kind)
    return _enum_value(spec, kind)


# ---------------------------------------------------------------- the pass


@dataclass
class _Result:
    orig: _Value
    new: _Value | None  # None: poisoned
    target: str = ""  # what it resolved to, for messages
    memsz_fail: bool = False


def _resolve(local_btf: BTF, target: BTF, relo: CoreRelo,
             cache: dict[tuple[int, int], list[int]]) -> tuple[_Spec, _Result]:
    local = _parse_spec(local_btf, relo)
    orig = _value(local, relo.kind)
    if relo.kind == TYPE_ID_LOCAL:
        return local, _Result(orig, orig)
    lt = local_btf.type_by_id(relo.type_id)
    if not lt.name:
        raise _Bad(f"the relocation's type {local_btf.type_str(relo.type_id)} is anonymous")
    key = (relo.type_id, 0)
    cands = cache.get(key)
    if cands is None:
        name = essential_name(lt.name)
        kinds = _ENUMS if lt.kind in _ENUMS else (lt.kind,)
        cands = [t.id for t in target.find_all(name) if t.kind in kinds]
        cache[key] = cands
    found: _Spec | None = None
    res: _Result | None = None
    for cid in cands:
        spec = _match(local, relo.kind, target, cid)
        if spec is None:
            continue
        try:
            new: _Value | None = _value(spec, relo.kind)
        except _Unresolved:
            new = None
        if found is None or res is None:
            found, res = spec, _Result(orig, new, _spec_text(spec, relo.kind))
            continue
        if relo.kind in _FIELD_KINDS and spec.bit_offset != found.bit_offset:
            raise _Bad(f"ambiguous: {_spec_text(found, relo.kind)} and "
                       f"{_spec_text(spec, relo.kind)} (types {found.root_id} and {cid}) "
                       "are at different offsets")
        if (new is None) != (res.new is None) or (
                new is not None and res.new is not None and new.value != res.new.value):
            raise _Bad(f"ambiguous: target types {found.root_id} and {cid} give different "
                       "values")
    if res is None:
        try:
            res = _Result(orig, _value(None, relo.kind), "no candidate")
        except _Unresolved:
            res = _Result(orig, None, "no candidate")
    if relo.kind == FIELD_BYTE_OFFSET and res.new is not None and orig.size != res.new.size:
        ot = local_btf.resolve(orig.type_id)
        nt = target.resolve(res.new.type_id)
        ok = (ot.kind == Kind.PTR and nt.kind == Kind.PTR) or (
            ot.kind == Kind.INT and nt.kind == Kind.INT and not ot.signed and not nt.signed)
        res.memsz_fail = not ok
    return local, res


_SIZES = {1: _isa.B, 2: _isa.H, 4: _isa.W, 8: _isa.DW}
_SIZE_BYTES = {v: k for k, v in _SIZES.items()}


def _patch(insns: list[Insn], i: int, res: _Result, where: str) -> bool:
    """Rewrite insn ``i``; False when it must be poisoned instead."""
    ins = insns[i]
    cls = ins.code & 7
    orig, new = res.orig, res.new
    if new is None:
        return False
    if cls in (_isa.ALU, _isa.ALU64):
        if ins.code & 0x08:  # BPF_X
            raise _Bad(f"{where}: register ALU instruction cannot be relocated")
        if orig.validate and (ins.imm & 0xFFFF_FFFF) != (orig.value & 0xFFFF_FFFF):
            raise _Bad(f"{where}: instruction holds {ins.imm}, expected {orig.value}")
        imm = new.value & 0xFFFF_FFFF
        insns[i] = ins._replace(imm=imm - (1 << 32) if imm >> 31 else imm)
        return True
    if cls in (_isa.LDX, _isa.ST, _isa.STX):
        if orig.validate and ins.off != orig.value:
            raise _Bad(f"{where}: instruction offset {ins.off}, expected {orig.value}")
        if new.value > 0x7FFF:
            raise _Bad(f"{where}: offset {new.value} does not fit an instruction")
        if res.memsz_fail:
            return False
        code = ins.code
        if new.size != orig.size and orig.size:
            if _SIZE_BYTES.get(code & 0x18) != orig.size:
                raise _Bad(f"{where}: memory access size {_SIZE_BYTES.get(code & 0x18)}, "
                           f"expected {orig.size}")
            if new.size not in _SIZES:
                raise _Bad(f"{where}: field size {new.size} cannot be loaded")
            code = (code & ~0x18) | _SIZES[new.size]
        insns[i] = ins._replace(code=code, off=new.value)
        return True
    if ins.code == _isa.LD_IMM64 and ins.src == 0 and ins.off == 0 and \
            i + 1 < len(insns) and insns[i + 1].code == _isa.FILLER:
        if orig.validate and ins.imm != orig.value & 0xFFFF_FFFF_FFFF_FFFF:
            raise _Bad(f"{where}: ld_imm64 holds {ins.imm}, expected {orig.value}")
        insns[i] = ins._replace(imm=new.value & 0xFFFF_FFFF_FFFF_FFFF)
        hi = (new.value >> 32) & 0xFFFF_FFFF
        insns[i + 1] = insns[i + 1]._replace(imm=hi - (1 << 32) if hi >> 31 else hi)
        return True
    raise _Bad(f"{where}: instruction (code {ins.code:#04x}) cannot be relocated")


def apply_core(relos: list[CoreRelo], local_btf: BTF, target: BTF,
               code: dict[int, list[Insn]]) -> dict[tuple[int, int], str]:
    """Resolve every record against ``target`` and patch ``code`` in place;
    return the poisoned instructions, (section index, insn) -> what failed."""
    poisoned: dict[tuple[int, int], str] = {}
    cache: dict[tuple[int, int], list[int]] = {}
    from ._btfext import CORE_KINDS

    for relo in relos:
        what = f"CO-RE relocation #{relo.number} ({CORE_KINDS[relo.kind]}) at " \
               f"{relo.section}+{relo.insn}"
        try:
            local, res = _resolve(local_btf, target, relo, cache)
            desc = f"{what}: {_spec_text(local, relo.kind)}"
            if not _patch(code[relo.sec_index], relo.insn, res, desc):
                insns = code[relo.sec_index]
                call = Insn(_isa.JMP | _isa.CALL, 0, 0, 0, POISON)
                if insns[relo.insn].code == _isa.LD_IMM64:
                    insns[relo.insn + 1] = call
                insns[relo.insn] = call
                why = "the target's field has another size and is not an unsigned " \
                    "integer or pointer" if res.memsz_fail else "no match in the target BTF"
                poisoned[(relo.sec_index, relo.insn)] = f"{desc}: {why}"
                if relo.insn + 1 < len(insns) and insns[relo.insn + 1] is call:
                    poisoned[(relo.sec_index, relo.insn + 1)] = f"{desc}: {why}"
        except _Bad as e:
            raise UserLoadError(f"{what}: {e}") from None
        except (BTFError, IndexError) as e:
            raise UserLoadError(f"{what}: {e}") from None
    return poisoned
