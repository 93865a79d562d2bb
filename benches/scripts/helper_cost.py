#!/usr/bin/env python3
"""What a BPF helper call costs on this host, timed like xdp_paths.

The xdp_paths figures include helper calls the product cannot avoid
(`bpf_xdp_adjust_head` to encapsulate, and a second one in the bench-only
restore). Their cost depends on the kernel and CPU more than on our code:
with AMD's SRSO "Safe RET" mitigation every `ret` goes through a thunk.
This prints the floor those calls set, so figures from different hosts or
kernels can be compared.

Each program is a few hand-assembled instructions, loaded with the bpf(2)
syscall and timed by BPF_PROG_TEST_RUN with `repeat`, interleaved, median
of the rounds, like xdp_paths. Run as root:
    benches/scripts/helper_cost.py [rounds] [repeat]
"""
import ctypes
import statistics
import struct
import sys

SYS_BPF = 321  # x86-64
BPF_PROG_LOAD, BPF_PROG_TEST_RUN = 5, 10
BPF_PROG_TYPE_XDP = 6
XDP_PASS = 2
HELPER_XDP_ADJUST_HEAD = 44
HELPER_KTIME_GET_COARSE_NS = 160

libc = ctypes.CDLL(None, use_errno=True)


def bpf(cmd, attr):
    buf = ctypes.create_string_buffer(bytes(attr), 160)
    if libc.syscall(SYS_BPF, cmd, buf, len(buf)) < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"bpf({cmd}): run as root")
    return buf


def insn(op, dst=0, src=0, off=0, imm=0):
    return struct.pack("<BBhi", op, (src << 4) | dst, off, imm)


def mov_imm(dst, imm):
    return insn(0xB7, dst, imm=imm)


def mov_reg(dst, src):
    return insn(0xBF, dst, src)


def call(helper):
    return insn(0x85, imm=helper)


EXIT = insn(0x95)


def load(body):
    """Loads `body` followed by `return XDP_PASS`; returns the fd."""
    code = b"".join(body + [mov_imm(0, XDP_PASS), EXIT])
    insns = ctypes.create_string_buffer(code)
    license_ = ctypes.create_string_buffer(b"GPL")
    attr = ctypes.create_string_buffer(struct.pack(
        "<IIQQ", BPF_PROG_TYPE_XDP, len(code) // 8, ctypes.addressof(insns),
        ctypes.addressof(license_)), 160)
    fd = libc.syscall(SYS_BPF, BPF_PROG_LOAD, attr, 160)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "BPF_PROG_LOAD: run as root")
    return fd


FRAME = ctypes.create_string_buffer(98)  # the size of xdp_paths' TCP frames
OUT = ctypes.create_string_buffer(256)


def time_ns(fd, repeat):
    attr = bytearray(80)
    struct.pack_into("<IIIIQQII", attr, 0, fd, 0, len(FRAME), len(OUT),
                     ctypes.addressof(FRAME), ctypes.addressof(OUT), repeat, 0)
    buf = bpf(BPF_PROG_TEST_RUN, attr)
    (retval,) = struct.unpack_from("<I", buf.raw, 4)
    (duration,) = struct.unpack_from("<I", buf.raw, 36)
    assert retval == XDP_PASS, retval
    return duration


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 31
    repeat = int(sys.argv[2]) if len(sys.argv) > 2 else 200_000
    ctx = mov_reg(6, 1)  # keep ctx across calls

    def head(delta):
        return [mov_reg(1, 6), mov_imm(2, delta), call(HELPER_XDP_ADJUST_HEAD)]

    programs = {
        "empty program": load([]),
        "bpf_xdp_adjust_head(0)": load([ctx] + head(0)),
        "adjust_head(-20), then (+20)": load([ctx] + head(-20) + head(20)),
        "bpf_ktime_get_coarse_ns": load([call(HELPER_KTIME_GET_COARSE_NS)]),
    }
    times = {name: [] for name in programs}
    for _ in range(rounds):
        for name, fd in programs.items():
            times[name].append(time_ns(fd, repeat))
    empty = statistics.median(times["empty program"])
    print(f"BPF_PROG_TEST_RUN, ns/run: median of {rounds} rounds x {repeat} runs")
    print()
    print("| program | ns | net of empty |")
    print("|---|---:|---:|")
    for name, t in times.items():
        median = statistics.median(t)
        print(f"| {name} | {median:.0f} | {median - empty:.0f} |")


if __name__ == "__main__":
    main()
