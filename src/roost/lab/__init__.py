"""The network-namespace lab: a bridge, a namespace where Roost serves, QEMU guests that
network-boot through it, and the commissioning image they boot. Used by ``roost lab``,
``roost demo``, the end-to-end tests and the benchmarks."""
