"""Model routing, templates and schemas: the parts of an inference that do not depend on Ray."""
