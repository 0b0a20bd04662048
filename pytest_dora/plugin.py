"""pytest11 entry point; the plugin is built in issue 6."""
