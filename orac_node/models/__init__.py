"""Speech model files: whisper.cpp's ggml format, and converting other formats into it."""
