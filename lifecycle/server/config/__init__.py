"""The server's configuration: the command line, the model config file, the platform config, text protos."""
