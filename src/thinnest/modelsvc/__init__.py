"""``thinnest models``: the shared model services of a machine.

One process loads the models once and serves every call on the machine (or on several
worker hosts, through ``THINNEST_MODELS_URL``): the LLM in a llama.cpp ``llama-server`` child
(parallel slots, continuous batching, prompt cache; OpenAI's chat-completions API), Whisper
and the offline voices behind OpenAI-compatible audio endpoints. A call's job process then
holds a connection, not a copy of the models.
"""
