"""The kernel lab: run vdevperf under another kernel, in a small qemu VM.

Two uses: the same benchmark on kernel A and kernel B without rebooting the
host (``vdevperf diff`` the two result files), and device kinds the host
kernel lacks (ipvlan, dummy, 802.1q, vrf, netem, fq on this project's CI).

Layers: ``host`` (tools, cache, /dev/kvm), ``assets`` (kernel and initramfs,
built on demand into the cache), ``cpio`` (the initramfs archive), ``guest``
(the guest's /init and job script), ``vm`` (qemu, output streaming, KVM/TCG),
``record`` (lab facts next to the results); the CLI flags are in ``vdevperf.cli.lab``.
Figures measured under TCG are emulated: functional checks, not performance.
"""

from vdevperf.lab.assets import KernelAssets, custom_kernel, debian_kernel
from vdevperf.lab.guest import Job
from vdevperf.lab.host import LabUnavailable
from vdevperf.lab.vm import Outcome, VmConfig, run

__all__ = ["Job", "KernelAssets", "LabUnavailable", "Outcome", "VmConfig", "custom_kernel", "debian_kernel", "run"]
