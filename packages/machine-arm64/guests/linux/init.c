/*
 * /init for the Linux acceptance initramfs: a freestanding, static aarch64 Linux program (no libc;
 * every system call is a raw `svc #0`, Linux Documentation/arch/arm64 ABI: number in x8, arguments
 * in x0..x5, result in x0, -errno on failure). It checks, from userspace, what Debian's stock arm64
 * kernel found on the machine it booted on, then powers the machine off:
 *
 *   a. mounts devtmpfs on /dev, sysfs on /sys, proc on /proc;
 *   b. prints the online CPUs (Linux Documentation/ABI/stable/sysfs-devices-system-cpu);
 *   c. the KVM PTP clock (drivers/ptp/ptp_kvm_common.c): PTP_SYS_OFFSET_PRECISE on /dev/ptp0
 *      (include/uapi/linux/ptp_clock.h), and CLOCK_MONOTONIC;
 *   d. the SMCCC TRNG (drivers/char/hw_random/arm_smccc_trng.c, a module: loaded with
 *      finit_module(MODULE_INIT_COMPRESSED_FILE), kernel/module/main.c) through /dev/hwrng
 *      (drivers/char/hw_random/core.c);
 *   e. prints "init: ready" — a snapshot point — and, in whatever process runs on, repeats the
 *      hwrng read and the PTP read and checks CLOCK_MONOTONIC did not go backwards;
 *   f. reboot(LINUX_REBOOT_CMD_POWER_OFF) (kernel/reboot.c), which on arm64 ends in PSCI
 *      SYSTEM_OFF (drivers/firmware/psci/psci.c). Anything fatal prints why and powers off too.
 *
 * Every line goes to /dev/console (or /dev/kmsg, or the fd 1 the kernel opened) as one write(),
 * prefixed "init: ". Missing PTP or TRNG is reported as absent, not as a failure: QEMU's TCG virt
 * machine has neither. Built by build.sh in this folder; see README.md.
 */
#include <asm/unistd.h>
#include <linux/module.h>
#include <linux/ptp_clock.h>
#include <linux/reboot.h>

typedef unsigned long u64;
typedef long s64;

#define AT_FDCWD (-100)
#define O_RDONLY 0
#define O_WRONLY 1
#define O_RDWR 2
#define O_NOCTTY 0400
#define O_CLOEXEC 02000000
#define EEXIST 17
#define CLOCK_MONOTONIC 1

static s64 sys6(long n, long a, long b, long c, long d, long e, long f) {
  register long x8 __asm__("x8") = n;
  register long x0 __asm__("x0") = a;
  register long x1 __asm__("x1") = b;
  register long x2 __asm__("x2") = c;
  register long x3 __asm__("x3") = d;
  register long x4 __asm__("x4") = e;
  register long x5 __asm__("x5") = f;
  __asm__ volatile("svc #0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5) : "memory", "cc");
  return x0;
}
#define sys(n, a, b, c) sys6((n), (long)(a), (long)(b), (long)(c), 0, 0, 0)

/* GCC may turn loops and aggregate initialisers into calls to these. */
void *memset(void *d, int c, unsigned long n) {
  unsigned char *p = d;
  while (n--) *p++ = (unsigned char)c;
  return d;
}
void *memcpy(void *d, const void *s, unsigned long n) {
  unsigned char *p = d;
  const unsigned char *q = s;
  while (n--) *p++ = *q++;
  return d;
}

static int out_fd = 1;
static int failures;

/* ---- line output: one write() per line, so kernel messages do not split it ---- */
static char line[512];
static unsigned len;

static void put(const char *s) {
  while (*s && len < sizeof line - 1) line[len++] = *s++;
}
static void put_u(u64 v, int width) { /* decimal, zero-padded to width */
  char b[24];
  int i = 0;
  do { b[i++] = (char)('0' + v % 10); v /= 10; } while (v);
  while (i < width) b[i++] = '0';
  while (i && len < sizeof line - 1) line[len++] = b[--i];
}
static void put_i(s64 v) {
  if (v < 0) { put("-"); v = -v; }
  put_u((u64)v, 0);
}
static void put_hex(const unsigned char *p, unsigned n) {
  static const char d[] = "0123456789abcdef";
  for (unsigned i = 0; i < n && len < sizeof line - 2; i++) { line[len++] = d[p[i] >> 4]; line[len++] = d[p[i] & 15]; }
}
static void put_time(s64 sec, u64 nsec) { put_i(sec); put("."); put_u(nsec, 9); }
static void put_errno(s64 r) { put("errno "); put_i(-r); }
static void begin(const char *s) { len = 0; put("init: "); put(s); }
static void end(void) {
  line[len++] = '\n';
  sys(__NR_write, out_fd, line, len);
  len = 0;
}
static void say(const char *s) { begin(s); end(); }

static void power_off(void) {
  say("powering off");
  s64 r = sys6(__NR_reboot, LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2, LINUX_REBOOT_CMD_POWER_OFF, 0, 0, 0);
  begin("reboot(POWER_OFF) returned "); put_errno(r); end();
  sys(__NR_exit, 1, 0, 0); /* the kernel panics when init exits; panic=-1 then resets */
  for (;;) __asm__ volatile("wfi");
}
static void fatal(const char *what, s64 r) {
  begin("fatal: "); put(what); put(": "); put_errno(r); end();
  power_off();
}

/* ---- files ---- */
static s64 open_at(const char *path, int flags) { return sys6(__NR_openat, AT_FDCWD, (long)path, flags | O_CLOEXEC, 0, 0, 0); }

/* Reads a small file into buf (NUL-terminated, trailing newlines removed); bytes read or -errno. */
static s64 read_text(const char *path, char *buf, unsigned size) {
  s64 fd = open_at(path, O_RDONLY), n = 0, r;
  if (fd < 0) return fd;
  while ((unsigned)n < size - 1 && (r = sys(__NR_read, fd, buf + n, size - 1 - n)) > 0) n += r;
  sys(__NR_close, fd, 0, 0);
  if (n == 0 && r < 0) return r;
  while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) n--;
  buf[n] = 0;
  return n;
}

static s64 mount_fs(const char *source, const char *target, const char *type) {
  s64 r = sys6(__NR_mkdirat, AT_FDCWD, (long)target, 0755, 0, 0, 0);
  if (r < 0 && r != -EEXIST) return r;
  return sys6(__NR_mount, (long)source, (long)target, (long)type, 0, 0, 0);
}

static int streq(const char *a, const char *b) {
  while (*a && *a == *b) a++, b++;
  return *a == *b;
}

/* ---- clocks ---- */
struct ts { s64 sec; s64 nsec; };
static struct ts mono_before;

static struct ts monotonic(void) {
  struct ts t = { 0, 0 };
  s64 r = sys(__NR_clock_gettime, CLOCK_MONOTONIC, &t, 0);
  if (r < 0) fatal("clock_gettime(CLOCK_MONOTONIC)", r);
  return t;
}

static int have_ptp;
static void ptp_precise(const char *when) {
  struct ptp_sys_offset_precise p;
  memset(&p, 0, sizeof p);
  s64 fd = open_at("/dev/ptp0", O_RDWR), r = fd;
  if (fd >= 0) {
    r = sys(__NR_ioctl, fd, PTP_SYS_OFFSET_PRECISE, &p);
    sys(__NR_close, fd, 0, 0);
  }
  begin("ptp0 precise "); put(when);
  if (r < 0) { put(" "); put_errno(r); failures++; end(); return; }
  put(" device="); put_time(p.device.sec, p.device.nsec);
  put(" realtime="); put_time(p.sys_realtime.sec, p.sys_realtime.nsec);
  put(" monoraw="); put_time(p.sys_monoraw.sec, p.sys_monoraw.nsec);
  put(" ok");
  end();
}

static void ptp(const char *when) {
  char name[64];
  s64 r = read_text("/sys/class/ptp/ptp0/clock_name", name, sizeof name);
  have_ptp = r >= 0;
  if (!have_ptp) { say("ptp0 absent"); return; }
  begin("ptp0 clock_name="); put(name); end();
  ptp_precise(when);
}

/* ---- hwrng ---- */
static int have_trng;
static void hwrng_read(void) {
  unsigned char b[32];
  s64 fd = open_at("/dev/hwrng", O_RDONLY), n = 0, r = fd;
  if (fd >= 0) {
    while (n < (s64)sizeof b && (r = sys(__NR_read, fd, b + n, sizeof b - n)) > 0) n += r;
    sys(__NR_close, fd, 0, 0);
  }
  if (n < (s64)sizeof b) {
    begin("hwrng read "); put_u(n, 0); put(" bytes, "); put_errno(r < 0 ? r : -5 /* EIO */); end();
    failures++;
    return;
  }
  begin("hwrng read 32 bytes "); put_hex(b, sizeof b); end();
}

static void trng(void) {
  s64 fd = open_at("/arm_smccc_trng.ko.xz", O_RDONLY), r = fd;
  if (fd >= 0) {
    r = sys(__NR_finit_module, fd, "", MODULE_INIT_COMPRESSED_FILE);
    sys(__NR_close, fd, 0, 0);
  }
  begin("smccc_trng module ");
  if (r < 0) { put_errno(r); failures++; } else put("ok");
  end();

  char cur[64];
  r = read_text("/sys/class/misc/hw_random/rng_current", cur, sizeof cur);
  if (r < 0) { say("hwrng absent"); return; }
  begin("hwrng current="); put(cur); end();
  have_trng = streq(cur, "smccc_trng");
  if (have_trng) hwrng_read();
  else say("hwrng absent");
}

void init_main(void) {
  /* a. file systems; devtmpfs first, so /dev/console exists whatever the initramfs held */
  s64 rdev = mount_fs("devtmpfs", "/dev", "devtmpfs");
  s64 fd = open_at("/dev/console", O_WRONLY | O_NOCTTY);
  if (fd < 0) fd = open_at("/dev/kmsg", O_WRONLY);
  if (fd >= 0) out_fd = (int)fd;
  say("started");
  if (rdev < 0) fatal("mount devtmpfs on /dev", rdev);
  s64 r = mount_fs("sysfs", "/sys", "sysfs");
  if (r < 0) fatal("mount sysfs on /sys", r);
  r = mount_fs("proc", "/proc", "proc");
  if (r < 0) fatal("mount proc on /proc", r);
  say("mounted /dev /sys /proc");

  /* b. CPUs */
  char cpus[64];
  r = read_text("/sys/devices/system/cpu/online", cpus, sizeof cpus);
  if (r < 0) fatal("read /sys/devices/system/cpu/online", r);
  begin("cpus online "); put(cpus); end();

  /* c. clocks */
  ptp("before");
  mono_before = monotonic();
  begin("clock monotonic "); put_time(mono_before.sec, mono_before.nsec); end();

  /* d. TRNG */
  trng();

  /* e. the snapshot point; everything after it may run in a restored process */
  say("ready");
  if (have_trng) hwrng_read();
  if (have_ptp) ptp_precise("after");
  struct ts now = monotonic();
  begin("clock monotonic "); put_time(now.sec, now.nsec); end();
  if (now.sec < mono_before.sec || (now.sec == mono_before.sec && now.nsec < mono_before.nsec)) {
    say("clock monotonic went backwards");
    failures++;
  } else say("clock monotonic ok");

  /* f. */
  begin("checks "); if (failures) { put("failed "); put_u((u64)failures, 0); } else put("ok"); end();
  power_off();
}

/* The kernel enters with sp 16-byte aligned (argc, argv, envp above it), no return address. */
__asm__(".text\n.global _start\n.type _start, %function\n_start:\n  mov x29, xzr\n  mov x30, xzr\n  bl init_main\n  b .\n");
