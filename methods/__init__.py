"""Built-in methods; each registers through the `crlbench.methods` entry point group."""
