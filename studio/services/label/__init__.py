"""The Label tab: the image queue, saving with conflict checks and undo, the editor's box format, model proposals, splits."""
