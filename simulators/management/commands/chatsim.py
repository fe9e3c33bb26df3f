from simulators.chat_model import ChatModelSimulator
from simulators.command import Knob, simulator_command

Command = simulator_command(
    "Chat-model simulator",
    "Run the chat-model simulator: a real HTTP server speaking the OpenAI-compatible "
    "/v1/chat/completions API (streaming, tool calls).",
    8089,
    (Knob("--tokens-per-second", 20.0, "How fast the reply's words come"),),
    lambda host, port, options: ChatModelSimulator(
        tokens_per_second=options["tokens_per_second"], host=host, port=port
    ),
)
