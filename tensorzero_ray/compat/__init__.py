"""Other APIs our gateway speaks, translated onto the native one."""
