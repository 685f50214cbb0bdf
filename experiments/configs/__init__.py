"""The shipped configs: installed as ``psp_rl.configs``, so ``psp-rl train quickstart`` finds one by name."""
