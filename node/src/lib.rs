//! spacefabric-node: one process of the emulated cluster.
