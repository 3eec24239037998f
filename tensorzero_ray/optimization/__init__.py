"""The data flywheel: stored inferences and feedback become fine-tuned models (TRL on Ray
Train, or a hosted provider's fine-tuning API) and a config snippet to serve and test them."""
