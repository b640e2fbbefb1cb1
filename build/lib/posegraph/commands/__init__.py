"""Commands beside the engine's own (installed as `posegraph.commands`): one module per
command, each with a `main(argv) -> exit code`, registered by name under the
`posegraph.commands` entry points (setup.cfg). The engine's CLI finds them there and never
imports this package itself.
"""
