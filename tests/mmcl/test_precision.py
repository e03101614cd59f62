"""The precision chosen for the hardware: the rule on CPU descriptions, and on this machine a
timing of the demo's image encoder both ways (the choice must not be the slow one)."""

from __future__ import annotations

import pytest
import torch

from mmcl.encoders import image_encoder
from mmcl.machine import cpu_info, cpu_summary
from mmcl.precision import choose_precision, fill_precision, step_seconds

ZEN2 = "model name\t: AMD EPYC 7B12\nflags\t\t: fpu sse sse2 avx avx2 fma bmi2\n"
ZEN4 = "model name\t: AMD EPYC 9B14\nflags\t\t: fpu avx2 avx512f avx512_vnni avx512_bf16\n"
SAPPHIRE = "model name\t: Intel(R) Xeon(R) Platinum 8481C\nflags\t\t: avx2 avx512f amx_bf16 amx_tile\n"
GRAVITON3 = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n"


@pytest.fixture
def no_isa_cap(monkeypatch):
    """The rule on a described CPU, whatever ISA cap the suite itself runs under."""
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)


@pytest.mark.parametrize(
    "cpuinfo, expected",
    [(ZEN2, "32-true"), (ZEN4, "bf16-mixed"), (SAPPHIRE, "bf16-mixed"), (GRAVITON3, "bf16-mixed")],
)
def test_cpu_rule(tmp_path, cpuinfo, expected, no_isa_cap):
    path = tmp_path / "cpuinfo"
    path.write_text(cpuinfo)
    precision, reason = choose_precision("cpu", None, cpuinfo=path)
    assert precision == expected
    assert ("no native bf16" in reason) == (expected == "32-true")


def test_explicit_precision_wins_and_is_logged(tmp_path, no_isa_cap):
    path = tmp_path / "cpuinfo"
    path.write_text(ZEN4)
    assert choose_precision("cpu", "32-true", cpuinfo=path) == ("32-true", "as configured")
    lines: list[str] = []
    kwargs = fill_precision(
        {"accelerator": "cpu", "precision": "bf16-mixed", "max_steps": 3}, "fit", lines.append
    )
    assert kwargs == {"accelerator": "cpu", "precision": "bf16-mixed", "max_steps": 3}
    assert lines == ["[fit] precision bf16-mixed: as configured"]


def test_cpu_summary_names_the_flags(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text(ZEN2)
    assert cpu_info(path) == ("AMD EPYC 7B12", {"fpu", "sse", "sse2", "avx", "avx2", "fma", "bmi2"})
    assert cpu_summary(path).startswith("AMD EPYC 7B12, ") and cpu_summary(path).endswith("flags: avx2")
    assert "flags: none of" in cpu_summary(tmp_path / "missing")


def test_chosen_precision_is_not_the_slow_one_on_this_cpu():
    """The demo's image encoder (ConvNet, 64x64, batch 32), one thread, timed in both
    precisions, alternating; the choice for this CPU must not be more than 1.5x slower per step
    than the other one. On a CPU without native bf16 the bf16 step is ~10x slower, so choosing
    bf16 there fails; on one with it, choosing fp32 fails only if bf16 is >1.5x faster."""
    chosen, reason = choose_precision("cpu", None)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        model = image_encoder(16, backbone="convnet", resolution=64, base_channels=32, global_max_pool=True)
        best = step_seconds(model, torch.rand(32, 3, 64, 64))
    finally:
        torch.set_num_threads(threads)
    other = "32-true" if chosen == "bf16-mixed" else "bf16-mixed"
    mine, other = best[chosen], best[other]
    assert mine <= 1.5 * other, (
        f"chose {chosen} ({reason}), but its step takes {mine * 1e3:.0f} ms against "
        f"{other * 1e3:.0f} ms in the other precision on {cpu_summary()}"
    )


def test_an_isa_cap_below_bf16_means_fp32(tmp_path, monkeypatch):
    """ATEN_CPU_CAPABILITY=avx2 / ONEDNN_MAX_CPU_ISA=AVX2 make a bf16 CPU emulate bf16 (on the
    development machine: 1.11 s per step of the test below against 0.11 in fp32)."""
    path = tmp_path / "cpuinfo"
    path.write_text(ZEN4)
    for var, value, expected in [
        ("ONEDNN_MAX_CPU_ISA", "AVX2", "32-true"),
        ("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16", "bf16-mixed"),
        ("ATEN_CPU_CAPABILITY", "avx2", "32-true"),
        ("ATEN_CPU_CAPABILITY", "avx512", "bf16-mixed"),
    ]:
        monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
        monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
        monkeypatch.setenv(var, value)
        precision, reason = choose_precision("cpu", None, cpuinfo=path)
        assert precision == expected, (var, value, reason)
