"""Front ends: each turns a file format into the same `compiler.ir.Graph`."""
