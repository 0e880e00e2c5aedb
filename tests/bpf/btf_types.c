/* Test fixture for bpfring.btf, compiled twice from the same definitions:
 *
 *   clang -O2 -g -target bpf -c btf_types.c   -> BTF (what bpfring.btf reads)
 *   cc -O0 btf_types.c                         -> host program printing the
 *                                                 layout the C compiler uses
 *
 * The host program prints "SIZE <struct> <n>", "OFF <struct>.<path> <off>
 * <size>" for every member (offsetof/sizeof), "MASK <struct>.<bitfield> <hex>"
 * (the struct's bytes with only that bitfield set to all ones) and "HEX <name>
 * <hex>" (instances filled with known values).  tests/test_btf_codec.py
 * compares all of it with the BTF-derived codecs (tests/btf_support.py builds
 * both).
 */
#ifdef __bpf__
#define DTAG(x) __attribute__((btf_decl_tag(x)))
#define TTAG(x) __attribute__((btf_type_tag(x)))
#define SEC(x) __attribute__((section(x), used))
#else
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#define DTAG(x)
#define TTAG(x)
#endif

typedef unsigned int my_u32_t;
typedef my_u32_t my_u32_alias_t;

enum color { RED = 0, GREEN = 1, BLUE = 7, NEG = -2 };
enum level { LOW = 1, MID = 2, HIGH = 3 };

struct inner {
	short a;
	char tag[3];
};

struct bits {
	unsigned int a : 3;
	signed int b : 5;
	unsigned int c : 20;
	enum level lvl : 3;
	_Bool flag : 1;
	unsigned long long big : 40;
	signed long long sbig : 23;
	unsigned char tail;
	unsigned short s1 : 7;
	signed short s2 : 9;
};

struct __attribute__((packed)) pbits {
	unsigned char x;
	unsigned int y : 20;
	unsigned int z : 20;
	unsigned long long w : 50;
	signed int neg : 13;
};

union num {
	unsigned int u;
	int i;
	float f;
	unsigned char b[4];
	struct {
		unsigned short lo;
		unsigned short hi;
	} half;
};

union bitunion {
	unsigned int whole;
	unsigned int low4 : 4;
	signed int sfield : 6;
};

struct anon_holder {
	int kind;
	union {
		int ival;
		float fval;
	};
	struct {
		unsigned short x;
		unsigned short y;
	};
	unsigned int bf : 4;
};

typedef struct {
	unsigned long long ts;
	my_u32_alias_t id;
} stamp_t;

struct opaque;

struct event {
	unsigned int pid;
	int neg;
	char comm[16];
	signed char sc;
	unsigned char uc;
	short ss;
	unsigned short us;
	long long sll;
	unsigned long long ull;
	_Bool ok;
	float f;
	double d;
	__int128 big;
	unsigned __int128 ubig;
	void *ptr;
	int TTAG("user") *uptr;
	struct opaque *op;
	enum color color;
	enum color colors[3];
	struct inner in;
	struct inner ins[3];
	struct inner many[6];
	int matrix[2][3];
	char names[2][8];
	unsigned short arr[5];
	union num u;
	union num nums[2];
	struct bits bf;
	const volatile int cv;
	my_u32_t td DTAG("tagged_member");
	stamp_t stamp;
	_Bool flags[3];
	double ds[2];
	unsigned char bytes[4];
	unsigned char flex[];
} DTAG("tagged_struct");

struct only_sizeof {
	int hidden;
};

#ifdef __bpf__
/* Typed globals keep the types in BTF (.bss). */
struct event event_keep = {};
struct pbits pbits_keep = {};
struct anon_holder anon_keep = {};
union bitunion bitunion_keep = {};
struct bits *bits_ptr_keep __attribute__((unused));
my_u32_alias_t * restrict restrict_keep;

/* .data, .rodata and a custom section, with known initial values. */
int data_counter = 42;
struct inner data_inner = { 7, "ab" };
enum color data_color = BLUE;
const volatile unsigned long long ro_limit = 1000;
const volatile char ro_name[8] = "ro";
int custom_var SEC(".data.custom") = 5;
stamp_t custom_stamp SEC(".data.custom") = { 99, 3 };

SEC("xdp") int prog(void *ctx)
{
	/* struct only_sizeof is used in sizeof only: clang keeps it out of BTF */
	return sizeof(struct only_sizeof) + data_counter + custom_var;
}

char LICENSE[] SEC("license") = "GPL";

#else /* host side */

static void hex(const char *name, const void *p, size_t n)
{
	const unsigned char *b = p;
	printf("HEX %s ", name);
	for (size_t i = 0; i < n; i++)
		printf("%02x", b[i]);
	printf("\n");
}

#define SZ(T) printf("SIZE %s %zu\n", #T, sizeof(T))
#define OFF(T, F) printf("OFF %s.%s %zu %zu\n", #T, #F, offsetof(T, F), sizeof(((T *)0)->F))
#define OFF_FLEX(T, F) printf("OFF %s.%s %zu 0\n", #T, #F, offsetof(T, F))
#define MASK(T, F, V)                             \
	do {                                      \
		T m_;                             \
		memset(&m_, 0, sizeof m_);        \
		m_.F = (V);                       \
		hex("MASK:" #T "." #F, &m_, sizeof m_); \
	} while (0)

int main(void)
{
	SZ(struct inner);
	OFF(struct inner, a);
	OFF(struct inner, tag);

	SZ(struct bits);
	OFF(struct bits, tail);
	MASK(struct bits, a, 7);
	MASK(struct bits, b, -1);
	MASK(struct bits, c, 0xfffff);
	MASK(struct bits, lvl, 7);
	MASK(struct bits, flag, 1);
	MASK(struct bits, big, 0xffffffffffULL);
	MASK(struct bits, sbig, -1);
	MASK(struct bits, s1, 0x7f);
	MASK(struct bits, s2, -1);

	SZ(struct pbits);
	OFF(struct pbits, x);
	MASK(struct pbits, y, 0xfffff);
	MASK(struct pbits, z, 0xfffff);
	MASK(struct pbits, w, 0x3ffffffffffffULL);
	MASK(struct pbits, neg, -1);

	SZ(union num);
	OFF(union num, u);
	OFF(union num, i);
	OFF(union num, f);
	OFF(union num, b);
	OFF(union num, half);
	OFF(union num, half.lo);
	OFF(union num, half.hi);

	SZ(union bitunion);
	OFF(union bitunion, whole);
	MASK(union bitunion, low4, 0xf);
	MASK(union bitunion, sfield, -1);

	SZ(struct anon_holder);
	OFF(struct anon_holder, kind);
	OFF(struct anon_holder, ival);
	OFF(struct anon_holder, fval);
	OFF(struct anon_holder, x);
	OFF(struct anon_holder, y);
	MASK(struct anon_holder, bf, 0xf);

	SZ(stamp_t);
	OFF(stamp_t, ts);
	OFF(stamp_t, id);

	SZ(struct event);
	OFF(struct event, pid);
	OFF(struct event, neg);
	OFF(struct event, comm);
	OFF(struct event, sc);
	OFF(struct event, uc);
	OFF(struct event, ss);
	OFF(struct event, us);
	OFF(struct event, sll);
	OFF(struct event, ull);
	OFF(struct event, ok);
	OFF(struct event, f);
	OFF(struct event, d);
	OFF(struct event, big);
	OFF(struct event, ubig);
	OFF(struct event, ptr);
	OFF(struct event, uptr);
	OFF(struct event, op);
	OFF(struct event, color);
	OFF(struct event, colors);
	OFF(struct event, in);
	OFF(struct event, in.a);
	OFF(struct event, in.tag);
	OFF(struct event, ins);
	OFF(struct event, ins[1].tag);
	OFF(struct event, many);
	OFF(struct event, many[5].a);
	OFF(struct event, matrix);
	OFF(struct event, matrix[1][2]);
	OFF(struct event, names);
	OFF(struct event, names[1]);
	OFF(struct event, arr);
	OFF(struct event, u);
	OFF(struct event, u.half.hi);
	OFF(struct event, nums);
	OFF(struct event, nums[1].f);
	OFF(struct event, bf);
	OFF(struct event, bf.tail);
	OFF(struct event, cv);
	OFF(struct event, td);
	OFF(struct event, stamp);
	OFF(struct event, stamp.id);
	OFF(struct event, flags);
	OFF(struct event, ds);
	OFF(struct event, bytes);
	OFF_FLEX(struct event, flex);

	/* Instances with known values; memset first so padding is zero. */
	struct event e;
	memset(&e, 0, sizeof e);
	e.pid = 4242;
	e.neg = -123456;
	strcpy(e.comm, "bash");
	e.sc = -5;
	e.uc = 250;
	e.ss = -30000;
	e.us = 65000;
	e.sll = -9000000000000000000LL;
	e.ull = 18000000000000000000ULL;
	e.ok = 1;
	e.f = 1.5f;
	e.d = -2.25;
	e.big = -((__int128)1 << 100) - 7;
	e.ubig = ((unsigned __int128)1 << 127) + 3;
	e.ptr = (void *)0xffff888012345678ULL;
	e.uptr = (int *)0x1000;
	e.op = 0;
	e.color = BLUE;
	e.colors[0] = NEG;
	e.colors[1] = GREEN;
	e.colors[2] = (enum color)42; /* not an enumerator: decodes as plain int */
	e.in.a = -7;
	memcpy(e.in.tag, "xyz", 3); /* no NUL: the whole array is the string */
	for (int i = 0; i < 3; i++) {
		e.ins[i].a = 100 + i;
		e.ins[i].tag[0] = 'a' + i;
	}
	for (int i = 0; i < 6; i++) {
		e.many[i].a = -1 - i;
		e.many[i].tag[0] = 'A' + i;
		e.many[i].tag[1] = 'a' + i;
	}
	for (int i = 0; i < 2; i++)
		for (int j = 0; j < 3; j++)
			e.matrix[i][j] = i * 10 + j - 3;
	strcpy(e.names[0], "alpha");
	strcpy(e.names[1], "\xc3\xa9t\xc3\xa9"); /* "été" in UTF-8 */
	for (int i = 0; i < 5; i++)
		e.arr[i] = 1000 * i + 1;
	e.u.f = 1.5f;
	e.nums[0].u = 0x00020001;
	e.nums[1].i = -1;
	e.bf.a = 5;
	e.bf.b = -9;
	e.bf.c = 0xabcde;
	e.bf.lvl = HIGH;
	e.bf.flag = 1;
	e.bf.big = 0x123456789aULL;
	e.bf.sbig = -4000000;
	e.bf.tail = 0x5a;
	e.bf.s1 = 99;
	e.bf.s2 = -200;
	*(int *)&e.cv = -1;
	e.td = 0xdeadbeef;
	e.stamp.ts = 1234567890123ULL;
	e.stamp.id = 77;
	e.flags[0] = 1;
	e.flags[2] = 1;
	e.ds[0] = 0.5;
	e.ds[1] = -1e300;
	e.bytes[0] = 1;
	e.bytes[3] = 255;
	hex("event", &e, sizeof e);

	struct pbits p;
	memset(&p, 0, sizeof p);
	p.x = 0xab;
	p.y = 0x12345;
	p.z = 0xfedcb;
	p.w = 0x2468ace013579ULL;
	p.neg = -4000;
	hex("pbits", &p, sizeof p);

	struct anon_holder h;
	memset(&h, 0, sizeof h);
	h.kind = 3;
	h.fval = 2.5f;
	h.x = 11;
	h.y = 22;
	h.bf = 9;
	hex("anon_holder", &h, sizeof h);

	union bitunion bu;
	memset(&bu, 0, sizeof bu);
	bu.whole = 0xffffffe5;
	hex("bitunion", &bu, sizeof bu);
	return 0;
}
#endif
