"""Sub-commands of the ``rmt`` CLI; each module has ``register(subparsers)`` and sets ``func`` on its parser.

Add a command by adding its module to :data:`COMMAND_MODULES`.
"""

COMMAND_MODULES = (
    "rmt.commands.server",
    "rmt.commands.smoke",
    "rmt.commands.collect",
    "rmt.commands.check",
    "rmt.commands.lint",
    "rmt.commands.report",
    "rmt.commands.run",
    "rmt.commands.capacity",
    "rmt.commands.compare",
    "rmt.commands.fleet",
    "rmt.commands.scenarios",
)
