"""The runner and command line of the Keras application task pipelines."""
