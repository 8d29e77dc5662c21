"""Plain-Python services behind every button of the studio (no Gradio in here)."""
