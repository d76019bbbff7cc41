"""Run records and where they are kept (the store), plus capture of what runs read and write."""
