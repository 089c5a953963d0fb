//! heapscope: the desktop app and command line.

fn main() {}
