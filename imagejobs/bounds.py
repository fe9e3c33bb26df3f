"""What a picture request may ask for: one home for the bounds the model,
the API's schema, the composer and the chat model's tool all check."""

PROMPT_MAX_LENGTH = 1000
# A picture's width and height, in pixels: what Forge draws (a multiple of
# the latent's 8 px) and what a GPU of ours has memory for.
SIDE_MIN = 64
SIDE_MAX = 2048
SIDE_MULTIPLE = 8
