from simulators.command import Knob, simulator_command
from simulators.forge import ForgeSimulator

Command = simulator_command(
    "Forge simulator",
    "Run the Forge simulator: a real HTTP server speaking Forge's /sdapi/v1 API.",
    7860,
    (
        Knob("--seconds-per-step", 0.1, "How long one sampling step takes"),
        Knob("--switch-seconds", 0.0, "How long loading another checkpoint takes"),
    ),
    lambda host, port, options: ForgeSimulator(
        host,
        port,
        seconds_per_step=options["seconds_per_step"],
        switch_seconds=options["switch_seconds"],
    ),
)
