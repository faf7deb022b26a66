"""Cache prefetch hints for the bar loop, numba.

The quiet stretch runs bars that read only the ranges and the mark close; the bar that ends
it (an order, a settlement, a table switch) then reads rows of a dozen other arrays (targets,
open, volume, funding, the execution model's memo) that have left the cache since the last
such bar. ``prefetch_row_nb(arr, t)`` asks the CPU to start loading the cache line of
``arr[t]`` (its first element) and returns at once; the stretch runs while the lines arrive.
A hint only: it changes no value, and an index out of range is never dereferenced by the CPU
(callers still keep it in range).
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from perpbt._jit import jit_nb


@intrinsic
def prefetch_row_nb(typingctx, arr, t):
    """Prefetch the cache line holding ``arr[t, 0, ...]`` (LLVM's llvm.prefetch: read,
    high locality, data cache)."""
    if not isinstance(arr, types.Array) or not isinstance(t, types.Integer):
        return None

    def codegen(context, builder, sig, args):
        arr_type = sig.args[0]
        ary = context.make_array(arr_type)(context, builder, args[0])
        stride0 = cgutils.unpack_tuple(builder, ary.strides, arr_type.ndim)[0]
        index = context.cast(builder, args[1], sig.args[1], types.intp)
        byte_ptr = ir.IntType(8).as_pointer()
        address = builder.gep(builder.bitcast(ary.data, byte_ptr), [builder.mul(index, stride0)])
        i32 = ir.IntType(32)
        hint = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [byte_ptr, i32, i32, i32]),
            "llvm.prefetch.p0i8")
        builder.call(hint, [address, i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return types.none(arr, t), codegen


@jit_nb(inline="always")
def prefetch_step_nb(t, mkt, targets, cfg, equity_out):
    """Prefetch what the full step of bar t (0 < t < T) reads first: the target row its
    open executes (decided at t-1), its prices, its funding, bar t-1's range and volume (the
    execution model's quote at the open) and the execution model's memo row."""
    prefetch_row_nb(targets, t - 1)
    prefetch_row_nb(mkt.time_ms, t)
    prefetch_row_nb(mkt.open, t)
    prefetch_row_nb(mkt.high, t)
    prefetch_row_nb(mkt.low, t)
    prefetch_row_nb(mkt.close, t)
    prefetch_row_nb(mkt.mark_open, t)
    prefetch_row_nb(mkt.mark_high, t)
    prefetch_row_nb(mkt.mark_low, t)
    prefetch_row_nb(mkt.mark_close, t)
    prefetch_row_nb(mkt.funding_rate, t)
    prefetch_row_nb(mkt.funding_covered, t)
    prefetch_row_nb(equity_out, t)
    if cfg.exec_on:
        prefetch_row_nb(mkt.volume, t)
        prefetch_row_nb(mkt.high, t - 1)
        prefetch_row_nb(mkt.low, t - 1)
        prefetch_row_nb(mkt.volume, t - 1)
        if cfg.exec_done.shape[0] > 0:
            prefetch_row_nb(cfg.exec_done, t)
            prefetch_row_nb(cfg.exec_state, t)
