"""Read a BPF ELF object (as clang writes it) into what the runtime needs.

Stdlib only (``struct``) plus :mod:`bpfring.btf` for the object's types.
The result, :class:`ObjectImage`, holds:

* the maps: BTF-defined maps of ``.maps`` (type, key/value size,
  max_entries, flags, BTF key/value types, initial prog-array slots) followed
  by one internal array map per global data section (``.bss``, ``.data``,
  ``.rodata``, ``.rodata.*``, ``.data.*``), named as libbpf names them
  (``echo.bss``), with the section's initial bytes;
* the programs, *linked* the way libbpf links them before BPF_PROG_LOAD: the
  program's own instructions, then every subprogram it calls or takes the
  address of (``.text`` functions, ``BPF_PSEUDO_FUNC`` callbacks), appended
  once each, with call offsets rewritten relative to the new layout.  Map
  references become ``ld_imm64`` with ``src = BPF_PSEUDO_MAP_IDX`` (imm: the
  map's index) and global data references ``BPF_PSEUDO_MAP_IDX_VALUE`` (imm:
  the map index, upper half: the offset in the section), exactly the kernel's
  fd_array encodings; callbacks ``BPF_PSEUDO_FUNC`` with a pc-relative imm;
* the object's BTF with DATASEC sizes and variable offsets filled in from
  the symbol table (as libbpf does when it opens an object);
* the license.

CO-RE relocations (``.BTF.ext``) are checked (known kind, on an
instruction, a type of the object's BTF) and, when :func:`parse` is given a
target BTF (the running kernel's, see :func:`bpfring.userspace.load`'s
``btf``), resolved against it with libbpf's semantics (:mod:`._core`);
without one the instructions keep the values clang compiled in: the layout
of the object's own types.

Anything the runtime would not run correctly is a :class:`UserLoadError`
naming it: an unknown relocation type, an extern symbol, a kfunc, an
unknown instruction, a jump out of its function, a legacy ``maps`` section.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from ..btf import BTF, Kind
from ..errors import BTFError
from . import _isa
from ._btfext import check_core, fixup_btf, line_info
from ._core import apply_core
from ._errors import UserLoadError
from ._isa import Insn

__all__ = ["FuncInfo", "LinkedProgram", "MapDef", "ObjectImage", "parse"]

# ELF constants
SHT_PROGBITS, SHT_SYMTAB, SHT_STRTAB, SHT_REL, SHT_NOBITS = 1, 2, 3, 9, 8
SHF_WRITE, SHF_ALLOC, SHF_EXECINSTR = 1, 2, 4
STT_NOTYPE, STT_OBJECT, STT_FUNC, STT_SECTION = 0, 1, 2, 3
STB_LOCAL = 0
SHN_UNDEF, SHN_ABS, SHN_COMMON = 0, 0xFFF1, 0xFFF2
EM_BPF = 247
R_BPF_NONE, R_BPF_64_64, R_BPF_64_ABS64, R_BPF_64_ABS32, R_BPF_64_NODYLD32 = 0, 1, 2, 3, 4
R_BPF_64_32 = 10
RELOC_NAMES = {0: "R_BPF_NONE", 1: "R_BPF_64_64", 2: "R_BPF_64_ABS64", 3: "R_BPF_64_ABS32",
               4: "R_BPF_64_NODYLD32", 10: "R_BPF_64_32"}

_SHDR = struct.Struct("<IIQQQQIIQQ")
_SYM = struct.Struct("<IBBHQQ")
_REL = struct.Struct("<QQ")

#: Program types by section name prefix, as libbpf's section table names them
#: (the longest matching prefix wins).
_SECTION_TYPES = (
    ("syscall", "syscall"), ("xdp", "xdp"), ("tc", "sched_cls"), ("tcx/", "sched_cls"),
    ("classifier", "sched_cls"), ("action", "sched_act"), ("socket", "socket_filter"),
    ("raw_tp", "raw_tracepoint"), ("raw_tracepoint", "raw_tracepoint"),
    ("tp_btf/", "tracing"), ("tp/", "tracepoint"), ("tracepoint/", "tracepoint"),
    ("kprobe/", "kprobe"), ("kretprobe/", "kprobe"), ("uprobe", "kprobe"),
    ("uretprobe", "kprobe"), ("usdt", "kprobe"), ("perf_event", "perf_event"),
    ("fentry/", "tracing"), ("fexit/", "tracing"), ("cgroup_skb/", "cgroup_skb"),
    ("flow_dissector", "flow_dissector"), ("sk_skb", "sk_skb"), ("sk_msg", "sk_msg"),
)


@dataclass
class MapDef:
    """One map of the object: a BTF-defined map or a global data section."""

    name: str
    type: int
    key_size: int
    value_size: int
    max_entries: int
    flags: int = 0
    key_type_id: int = 0
    value_type_id: int = 0
    #: For internal maps: the section (``.bss``), its initial bytes, read-only.
    section: str | None = None
    data: bytes = b""
    readonly: bool = False
    #: Prog-array slots set in the source (``.values = { [1] = &prog }``).
    init_progs: dict[int, str] = field(default_factory=dict)
    pinning: int = 0
    map_extra: int = 0

    @property
    def internal(self) -> bool:
        return self.section is not None


@dataclass(frozen=True)
class FuncInfo:
    """A function placed in a linked program: its first pc and name."""

    start: int
    size: int
    name: str


@dataclass
class LinkedProgram:
    """A program with its subprograms, ready for the interpreter."""

    name: str
    section: str
    prog_type: str
    insns: list[Insn]
    functions: list[FuncInfo]
    #: pc -> note for the disassembly (which map or section an ld_imm64 names).
    notes: dict[int, str] = field(default_factory=dict)
    #: pc -> "file:line: source text" where the object's line info starts a line.
    lines: dict[int, str] = field(default_factory=dict)
    #: kfuncs called (``call`` with src BPF_PSEUDO_KFUNC_CALL, imm an index here).
    kfuncs: list[str] = field(default_factory=list)

    def source_at(self, pc: int) -> str:
        """The C source line ``pc`` was compiled from (from .BTF.ext line info), or ""."""
        f = self.function_at(pc)
        lo = f.start if f is not None else 0
        for p in range(pc, lo - 1, -1):
            if p in self.lines:
                return self.lines[p]
        return ""

    def function_at(self, pc: int) -> FuncInfo | None:
        for f in reversed(self.functions):
            if f.start <= pc < f.start + f.size:
                return f
        return None

    @property
    def raw(self) -> bytes:
        """The linked instructions as bytes (the kernel's encoding)."""
        return _isa.encode(self.insns)


@dataclass
class ObjectImage:
    name: str
    license: str
    maps: list[MapDef]
    programs: dict[str, LinkedProgram]
    btf: BTF | None
    #: CO-RE relocation records read.
    core_relos: int = 0
    #: What they were resolved against: "object" (the compiled-in values) or
    #: the target BTF's description ("kernel", a path).
    core_target: str = "object"
    #: Instructions poisoned because a relocation found no match (see _core).
    core_poisoned: int = 0


@dataclass
class _Section:
    index: int
    name: str
    type: int
    flags: int
    offset: int
    size: int
    link: int
    info: int
    data: bytes


@dataclass
class _Symbol:
    name: str
    value: int
    size: int
    type: int
    bind: int
    shndx: int


@dataclass
class _Func:
    name: str
    sec: int  # section index
    start: int  # insn index in the section
    size: int  # in insn slots
    is_program: bool


class _Elf:
    """Sections and symbols of an ELF64 little-endian BPF object."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        if data[:4] != b"\x7fELF":
            raise UserLoadError("not an ELF file",
                                hint="pass a compiled .bpf.o, or a .bpf.c to build first")
        if len(data) < 64 or data[4] != 2 or data[5] != 1:
            raise UserLoadError("not a 64-bit little-endian ELF file")
        machine = struct.unpack_from("<H", data, 18)[0]
        if machine != EM_BPF:
            raise UserLoadError(f"ELF machine {machine} is not BPF ({EM_BPF})",
                                hint="compile with clang -target bpf")
        shoff = struct.unpack_from("<Q", data, 0x28)[0]
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
        if shoff == 0 or shentsize < _SHDR.size or shoff + shnum * shentsize > len(data):
            raise UserLoadError("bad ELF section table")
        raw = [_SHDR.unpack_from(data, shoff + i * shentsize) for i in range(shnum)]
        if shstrndx >= shnum:
            raise UserLoadError("bad ELF section name table index")
        names = self._bytes(raw[shstrndx][4], raw[shstrndx][5], "section names")
        self.sections: list[_Section] = []
        for i, (name_off, typ, flags, _addr, off, size, link, info, _al, _es) in enumerate(raw):
            body = self._bytes(off, size, f"section {i}") if typ not in (SHT_NOBITS, 0) else b""
            self.sections.append(_Section(i, _cstr(names, name_off), typ, flags, off, size,
                                          link, info, body))
        self.symbols: list[_Symbol] = []
        symtabs = [s for s in self.sections if s.type == SHT_SYMTAB]
        if len(symtabs) != 1:
            raise UserLoadError(f"ELF file has {len(symtabs)} symbol tables (expected 1)")
        symtab = symtabs[0]
        if symtab.link >= len(self.sections):
            raise UserLoadError("bad symbol string table index")
        strtab = self.sections[symtab.link].data
        for i in range(len(symtab.data) // _SYM.size):
            name_off, info, _other, shndx, value, size = _SYM.unpack_from(symtab.data,
                                                                          i * _SYM.size)
            self.symbols.append(_Symbol(_cstr(strtab, name_off), value, size, info & 0xF,
                                        info >> 4, shndx))

    def _bytes(self, off: int, size: int, what: str) -> bytes:
        if off + size > len(self.data):
            raise UserLoadError(f"ELF {what} runs past the end of the file")
        return self.data[off:off + size]

    def section(self, name: str) -> _Section | None:
        for s in self.sections:
            if s.name == name:
                return s
        return None


def _cstr(buf: bytes, off: int) -> str:
    if off >= len(buf):
        raise UserLoadError(f"string offset {off} outside its table")
    end = buf.find(b"\0", off)
    return buf[off:end if end >= 0 else None].decode("utf-8", "replace")


def _is_data_section(s: _Section) -> bool:
    if not s.flags & SHF_ALLOC or s.flags & SHF_EXECINSTR:
        return False
    if s.type not in (SHT_PROGBITS, SHT_NOBITS):
        return False
    n = s.name
    return n in (".data", ".bss", ".rodata") or n.startswith((".data.", ".bss.", ".rodata."))


def internal_map_name(obj_name: str, section: str) -> str:
    """The name libbpf gives the map of a global data section (15 characters at most)."""
    sfx_len = max(7, len(section))
    pfx_len = 0 if "." in section[1:] else min(16 - sfx_len - 1, len(obj_name))
    pfx_len = max(pfx_len, 0)
    name = (obj_name[:pfx_len] + section[:sfx_len])[:15]
    return "".join(c if c.isalnum() or c in "_." else "_" for c in name)


def prog_type_of(section: str) -> str:
    best = ""
    kind = "unspec"
    for prefix, typ in _SECTION_TYPES:
        if (section == prefix or section.startswith(prefix)
                or section.startswith(prefix.rstrip("/") + "/")) and len(prefix) > len(best):
            best, kind = prefix, typ
    return kind


# --------------------------------------------------------------------------------------
# maps
# --------------------------------------------------------------------------------------

_MAP_KEYS = {"type", "max_entries", "key_size", "value_size", "key", "value", "map_flags",
             "pinning", "values", "map_extra", "numa_node"}


def _btf_maps(elf: _Elf, btf: BTF | None) -> list[MapDef]:
    sec = elf.section(".maps")
    if sec is None:
        if elf.section("maps") is not None:
            raise UserLoadError("legacy 'maps' section (struct bpf_map_def) is not supported",
                                hint="declare maps in SEC(\".maps\") with __uint/__type")
        return []
    if btf is None:
        raise UserLoadError(".maps needs BTF", hint="compile with -g")
    try:
        variables = btf.datasec(".maps")
    except BTFError:
        raise UserLoadError("no BTF DATASEC for .maps") from None
    syms = {s.name: s for s in elf.symbols if s.shndx == sec.index}
    out = []
    for var in variables:
        if var.name not in syms:
            raise UserLoadError(f"map {var.name!r} has no symbol in .maps")
        st = btf.resolve(var.type_id)
        if st.kind != Kind.STRUCT:
            raise UserLoadError(f"map {var.name!r} is not a struct in BTF")
        m = MapDef(var.name, 0, 0, 0, 0)
        values_off = -1
        for mem in st.members:
            if mem.name not in _MAP_KEYS:
                raise UserLoadError(f"map {var.name!r}: unknown map attribute {mem.name!r}")
            t = btf.resolve(mem.type_id)
            if mem.name == "values":
                values_off = mem.offset
                continue
            if t.kind != Kind.PTR:
                raise UserLoadError(f"map {var.name!r}: attribute {mem.name!r} is not a "
                                    "__uint/__type pointer")
            target = btf.resolve(t.type_id)
            if mem.name in ("key", "value"):
                size = btf.sizeof(t.type_id)
                if mem.name == "key":
                    m.key_size, m.key_type_id = size, t.type_id
                else:
                    m.value_size, m.value_type_id = size, t.type_id
                continue
            if target.kind != Kind.ARRAY:
                raise UserLoadError(f"map {var.name!r}: attribute {mem.name!r} is not __uint")
            n = target.nelems
            if mem.name == "type":
                m.type = n
            elif mem.name == "max_entries":
                m.max_entries = n
            elif mem.name == "key_size":
                m.key_size = n
            elif mem.name == "value_size":
                m.value_size = n
            elif mem.name == "map_flags":
                m.flags = n
            elif mem.name == "pinning":
                m.pinning = n
            elif mem.name == "map_extra":
                m.map_extra = n
        if values_off >= 0:
            m.init_progs = _map_init_values(elf, sec, syms[var.name].value + values_off,
                                            syms[var.name].value + var.size
                                            if var.size else None, var.name)
            if m.init_progs and m.value_size == 0:
                m.value_size = 4
            if m.key_size == 0:
                m.key_size = 4
        out.append(m)
    return out


def _map_init_values(elf: _Elf, maps_sec: _Section, start: int, end: int | None,
                     name: str) -> dict[int, str]:
    """Slots of ``.values = { [i] = &prog }`` from the relocations of ``.maps``."""
    out: dict[int, str] = {}
    for rel in elf.sections:
        if rel.type != SHT_REL or rel.info != maps_sec.index:
            continue
        for i in range(len(rel.data) // _REL.size):
            off, info = _REL.unpack_from(rel.data, i * _REL.size)
            if off < start or (end is not None and off >= end):
                continue
            sym = elf.symbols[info >> 32]
            if sym.shndx < len(elf.sections) and elf.sections[sym.shndx].flags & SHF_EXECINSTR:
                out[(off - start) // 8] = sym.name
            else:
                raise UserLoadError(f"map {name!r}: initial value {sym.name!r} is not a "
                                    "program (maps of maps are not supported)")
    return out


# --------------------------------------------------------------------------------------
# programs
# --------------------------------------------------------------------------------------


@dataclass
class _Ref:
    kind: str  # "map", "value", "func", "call", "kfunc", "poison"
    map_index: int = 0
    offset: int = 0
    sec: int = 0
    target: int = 0  # insn index in section ``sec``
    note: str = ""


def parse(data: bytes, name: str, target: BTF | Callable[[], BTF | None] | None = None,
          target_name: str = "kernel") -> ObjectImage:
    """Parse an object file's bytes; ``name`` is the object name (map prefixes).
    ``target``: the BTF to resolve CO-RE relocations against (or a function
    giving it, or None, called only when the object has relocations); None:
    the object's own BTF (the compiled-in values stay)."""
    elf = _Elf(bytes(data))
    lic_sec = elf.section("license")
    license_text = lic_sec.data.split(b"\0", 1)[0].decode("ascii", "replace") if lic_sec else ""
    btf_sec = elf.section(".BTF")
    btf = fixup_btf(btf_sec.data, elf) if btf_sec is not None else None

    maps = _btf_maps(elf, btf)
    map_by_sym: dict[tuple[int, int], int] = {}
    maps_sec = elf.section(".maps")
    if maps_sec is not None:
        by_name = {m.name: i for i, m in enumerate(maps)}
        for y in elf.symbols:
            if y.shndx == maps_sec.index and y.name in by_name:
                map_by_sym[(maps_sec.index, y.value)] = by_name[y.name]
    data_map: dict[int, int] = {}  # section index -> map index
    for s in elf.sections:
        if _is_data_section(s):
            body = bytes(s.size) if s.type == SHT_NOBITS else s.data
            ro = s.name.startswith(".rodata")
            data_map[s.index] = len(maps)
            maps.append(MapDef(internal_map_name(name, s.name), 2, 4, s.size, 1,
                               flags=0x480 if ro else 0x400, section=s.name, data=body,
                               readonly=ro))

    funcs: dict[tuple[int, int], _Func] = {}
    code: dict[int, list[Insn]] = {}
    text = elf.section(".text")
    for s in elf.sections:
        if s.type != SHT_PROGBITS or not s.flags & SHF_EXECINSTR or s.size == 0:
            continue
        if s.size % 8:
            raise UserLoadError(f"section {s.name} size {s.size} is not a multiple of 8")
        code[s.index] = _isa.decode(s.data)
        syms = sorted((y for y in elf.symbols if y.shndx == s.index and y.type == STT_FUNC),
                      key=lambda y: y.value)
        if not syms:
            raise UserLoadError(f"section {s.name} has code but no function symbol")
        for y in syms:
            is_prog = text is None or s.index != text.index
            if is_prog and y.bind == STB_LOCAL:
                raise UserLoadError(f"program {y.name!r} in {s.name} is static",
                                    hint="programs must not be static functions")
            size = y.size // 8 if y.size else (s.size - y.value) // 8
            funcs[(s.index, y.value // 8)] = _Func(y.name, s.index, y.value // 8, size, is_prog)

    refs: dict[int, dict[int, _Ref]] = {i: {} for i in code}
    for rel in elf.sections:
        if rel.type != SHT_REL or rel.info not in code:
            continue
        sec = elf.sections[rel.info]
        for i in range(len(rel.data) // _REL.size):
            off, info = _REL.unpack_from(rel.data, i * _REL.size)
            rtype, symi = info & 0xFFFFFFFF, info >> 32
            if symi >= len(elf.symbols):
                raise UserLoadError(f"relocation in {sec.name} names symbol {symi}: none")
            sym = elf.symbols[symi]
            idx = off // 8
            insns = code[rel.info]
            if off % 8 or idx >= len(insns):
                raise UserLoadError(f"relocation at byte {off} of {sec.name} is not on an "
                                    "instruction")
            refs[rel.info][idx] = _resolve_reloc(elf, sec, insns[idx], idx, rtype, sym,
                                                 map_by_sym, data_map, maps, code)

    relos = check_core(elf, btf, code) if btf is not None else []
    core_target, poisoned = "object", 0
    if relos and btf is not None and target is not None:
        tbtf = target if isinstance(target, BTF) else target()
        if tbtf is not None:
            for (sidx, j), why in apply_core(relos, btf, tbtf, code).items():
                refs[sidx][j] = _Ref("poison", note=why)
                poisoned += 1
            core_target = target_name
    lines = line_info(elf, btf) if btf is not None else {}

    programs: dict[str, LinkedProgram] = {}
    for f in funcs.values():
        if not f.is_program:
            continue
        sname = elf.sections[f.sec].name
        programs[f.name] = _link(f, funcs, code, refs, elf, sname, lines)
    return ObjectImage(name, license_text, maps, programs, btf, len(relos), core_target,
                       poisoned)


def _resolve_reloc(elf: _Elf, sec: _Section, ins: Insn, idx: int, rtype: int, sym: _Symbol,
                   map_by_sym: dict[tuple[int, int], int], data_map: dict[int, int],
                   maps: list[MapDef], code: dict[int, list[Insn]]) -> _Ref:
    where = f"{sec.name}+{idx}"
    if rtype not in (R_BPF_64_64, R_BPF_64_32):
        raise UserLoadError(f"unsupported relocation {RELOC_NAMES.get(rtype, rtype)} at "
                            f"{where} (symbol {sym.name!r})")
    if sym.shndx == SHN_UNDEF:
        if ins.code == _isa.JMP | _isa.CALL and rtype == R_BPF_64_32:
            return _Ref("kfunc", note=sym.name)  # resolved by name when the object binds
        raise UserLoadError(f"extern {sym.name!r} (at {where}) is not supported in user space")
    if sym.shndx >= len(elf.sections):
        raise UserLoadError(f"symbol {sym.name!r} at {where} is in special section "
                            f"{sym.shndx:#x}")
    target = elf.sections[sym.shndx]
    if rtype == R_BPF_64_32:
        if ins.code != _isa.JMP | _isa.CALL or ins.src != _isa.PSEUDO_CALL:
            raise UserLoadError(f"R_BPF_64_32 at {where} is not on a bpf-to-bpf call")
        if sym.shndx not in code:
            raise UserLoadError(f"call at {where} targets {sym.name!r}, not code")
        return _Ref("call", sec=sym.shndx, target=sym.value // 8 + ins.imm + 1)
    if ins.code != _isa.LD_IMM64:
        raise UserLoadError(f"R_BPF_64_64 at {where} is not on an ld_imm64 instruction")
    lo = ins.imm & 0xFFFFFFFF
    lo = lo - (1 << 32) if lo >= 1 << 31 else lo
    if sym.shndx in code:
        byte = sym.value + lo
        if byte % 8:
            raise UserLoadError(f"function address at {where} is not on an instruction")
        return _Ref("func", sec=sym.shndx, target=byte // 8)
    if target.name == ".maps":
        key = (sym.shndx, sym.value)
        if key not in map_by_sym:
            raise UserLoadError(f"ld_imm64 at {where} names {sym.name!r} in .maps: no such map")
        mi = map_by_sym[key]
        return _Ref("map", map_index=mi, note=f"map {maps[mi].name}")
    if sym.shndx in data_map:
        mi = data_map[sym.shndx]
        off = sym.value + lo
        if not 0 <= off <= maps[mi].value_size:
            raise UserLoadError(f"ld_imm64 at {where} points outside {target.name}")
        label = sym.name if sym.type != STT_SECTION else target.name
        return _Ref("value", map_index=mi, offset=off, note=f"{label} ({target.name}+{off})")
    raise UserLoadError(f"ld_imm64 at {where} references {sym.name!r} in section "
                        f"{target.name!r}, which the runtime does not map")


def _link(main: _Func, funcs: dict[tuple[int, int], _Func], code: dict[int, list[Insn]],
          refs: dict[int, dict[int, _Ref]], elf: _Elf, section: str,
          lines: dict[tuple[int, int], str] | None = None) -> LinkedProgram:
    """Lay out ``main`` and every subprogram it reaches; fix calls and references."""
    placed: dict[tuple[int, int], int] = {}  # (sec, start) -> new start pc
    order: list[_Func] = [main]
    placed[(main.sec, main.start)] = 0
    out: list[Insn] = []
    infos: list[FuncInfo] = []
    notes: dict[int, str] = {}
    src_lines: dict[int, str] = {}
    kfuncs: list[str] = []
    fixups: list[tuple[int, tuple[int, int], str]] = []  # (pc, (sec, target), kind)
    i = 0
    while i < len(order):
        f = order[i]
        i += 1
        base = len(out)
        infos.append(FuncInfo(base, f.size, f.name))
        insns = code[f.sec]
        sref = refs[f.sec]
        sname = elf.sections[f.sec].name
        for j in range(f.start, f.start + f.size):
            if j >= len(insns):
                raise UserLoadError(f"function {f.name} runs past the end of {sname}")
            ins = insns[j]
            pc = len(out)
            if lines and (f.sec, j) in lines:
                src_lines[pc] = lines[(f.sec, j)]
            why = _isa.check(ins)
            if why:
                raise UserLoadError(f"{f.name}: invalid instruction at {sname}+{j} "
                                    f"(code {ins.code:#04x}): {why}")
            if ins.code == _isa.LD_IMM64 and (j + 1 >= len(insns) or insns[j + 1].code !=
                                               _isa.FILLER):
                raise UserLoadError(f"{f.name}: ld_imm64 at {sname}+{j} has no second half")
            ref = sref.get(j)
            cls = ins.code & 7
            if ins.code == _isa.LD_IMM64 and ins.src in (_isa.PSEUDO_MAP_FD,
                                                          _isa.PSEUDO_MAP_VALUE) and ref is None:
                raise UserLoadError(f"{f.name}: map reference at {sname}+{j} has no relocation")
            if ref is not None and ref.kind == "poison":
                notes[pc] = ref.note
            elif ref is not None and ref.kind == "kfunc":
                if ref.note not in kfuncs:
                    kfuncs.append(ref.note)
                ins = ins._replace(src=_isa.PSEUDO_KFUNC_CALL, imm=kfuncs.index(ref.note))
                notes[pc] = ref.note
            elif ref is not None and ref.kind == "map":
                ins = ins._replace(src=_isa.PSEUDO_MAP_IDX, imm=ref.map_index)
                notes[pc] = ref.note
            elif ref is not None and ref.kind == "value":
                ins = ins._replace(src=_isa.PSEUDO_MAP_IDX_VALUE,
                                   imm=ref.map_index | (ref.offset << 32))
                notes[pc] = ref.note
            elif ref is not None and ref.kind in ("func", "call"):
                key = (ref.sec, ref.target)
                callee = funcs.get(key)
                if callee is None:
                    raise UserLoadError(f"{f.name}: {ref.kind} at {sname}+{j} targets "
                                        f"{elf.sections[ref.sec].name}+{ref.target}: not the "
                                        "start of a function")
                if key not in placed:
                    placed[key] = -1
                    order.append(callee)
                fixups.append((pc, key, ref.kind))
                notes[pc] = callee.name
                if ref.kind == "func":
                    ins = ins._replace(src=_isa.PSEUDO_FUNC)
            elif cls == _isa.JMP and ins.code & 0xF0 == _isa.CALL and ins.src == _isa.PSEUDO_CALL:
                key = (f.sec, j + ins.imm + 1)
                callee = funcs.get(key)
                if callee is None:
                    raise UserLoadError(f"{f.name}: call at {sname}+{j} does not reach the "
                                        "start of a function")
                if key not in placed:
                    placed[key] = -1
                    order.append(callee)
                fixups.append((pc, key, "call"))
                notes[pc] = callee.name
            elif ins.code == _isa.LD_IMM64 and ins.src not in (0,):
                raise UserLoadError(f"{f.name}: ld_imm64 at {sname}+{j} with pseudo source "
                                    f"{ins.src} has no relocation")
            elif cls == _isa.JMP and ins.code & 0xF0 == _isa.CALL and \
                    ins.src == _isa.PSEUDO_KFUNC_CALL:
                raise UserLoadError(f"{f.name}: kfunc call at {sname}+{j} names no function")
            out.append(ins)
        _check_jumps(out, base, f, sname)
        placed[(f.sec, f.start)] = base
    for pc, key, kind in fixups:
        target = placed[key]
        ins = out[pc]
        if kind == "func":
            out[pc] = ins._replace(imm=(target - pc - 1) & 0xFFFFFFFFFFFFFFFF)
            out[pc + 1] = out[pc + 1]._replace(imm=0)
        else:
            out[pc] = ins._replace(imm=target - pc - 1)
    return LinkedProgram(main.name, section, prog_type_of(section), out, infos, notes,
                         src_lines, kfuncs)


def _check_jumps(out: list[Insn], base: int, f: _Func, sname: str) -> None:
    """Jumps stay inside their function and land on an instruction; the function
    cannot run off its end."""
    end = len(out)
    for pc in range(base, end):
        ins = out[pc]
        cls = ins.code & 7
        if ins.code == _isa.FILLER or cls not in (_isa.JMP, _isa.JMP32):
            continue
        op = ins.code & 0xF0
        if op in (_isa.CALL, _isa.EXIT):
            continue
        delta = ins.imm if (cls == _isa.JMP32 and op == _isa.JA) else ins.off
        t = pc + delta + 1
        if not base <= t < end or out[t].code == _isa.FILLER:
            raise UserLoadError(f"{f.name}: jump at {sname}+{f.start + pc - base} goes to "
                                f"{f.start + t - base}, outside the function")
    last = out[end - 1] if end > base else None
    if last is None or not (last.code == _isa.JMP | _isa.EXIT or
                            (last.code & 7 in (_isa.JMP, _isa.JMP32)
                             and last.code & 0xF0 == _isa.JA)):
        raise UserLoadError(f"{f.name}: the last instruction is not exit or goto: the "
                            "program could run off its end")


def link_raw(insns: list[Insn], name: str, prog_type: str) -> LinkedProgram:
    """A program given as instructions (no ELF file): checked as the loader checks
    a function, with subprograms found from bpf-to-bpf calls and ``BPF_PSEUDO_FUNC``
    loads, as the kernel finds them.  Map references are not possible here."""
    if not insns:
        raise UserLoadError(f"program {name!r} has no instructions")
    starts = {0}
    for pc, ins in enumerate(insns):
        why = _isa.check(ins)
        if why:
            raise UserLoadError(f"{name}: invalid instruction at {pc} (code {ins.code:#04x}): "
                                f"{why}")
        if ins.code == _isa.LD_IMM64:
            if pc + 1 >= len(insns) or insns[pc + 1].code != _isa.FILLER:
                raise UserLoadError(f"{name}: ld_imm64 at {pc} has no second half")
            if ins.src == _isa.PSEUDO_FUNC:
                rel = ins.imm & 0xFFFFFFFF
                starts.add(pc + (rel - (1 << 32) if rel >> 31 else rel) + 1)
            elif ins.src:
                raise UserLoadError(f"{name}: ld_imm64 at {pc} with pseudo source {ins.src} "
                                    "needs an object file (maps)")
        if ins.code == _isa.JMP | _isa.CALL:
            if ins.src == _isa.PSEUDO_CALL:
                starts.add(pc + ins.imm + 1)
            elif ins.src == _isa.PSEUDO_KFUNC_CALL:
                raise UserLoadError(f"{name}: kfunc call at {pc} is not supported")
    order = sorted(starts)
    if order[-1] >= len(insns) or order[0] < 0:
        raise UserLoadError(f"{name}: a call or function address leaves the program")
    infos = []
    for i, start in enumerate(order):
        end = order[i + 1] if i + 1 < len(order) else len(insns)
        fname = name if start == 0 else f"{name}+{start}"
        infos.append(FuncInfo(start, end - start, fname))
        _check_jumps(insns[:end], start, _Func(fname, 0, start, end - start, start == 0),
                     "insns")
    return LinkedProgram(name, prog_type, prog_type, list(insns), infos, {})
