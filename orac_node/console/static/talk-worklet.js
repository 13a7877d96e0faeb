// The talk button's audio tap: runs in the browser's audio thread, hands the page
// 20 ms blocks of 16-bit samples (the context runs at 16 kHz, the wire's rate).
class PcmCapture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.block = new Int16Array(320); // 20 ms at 16 kHz
    this.filled = 0;
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (channel) {
      for (let i = 0; i < channel.length; i++) {
        const s = Math.max(-1, Math.min(1, channel[i]));
        this.block[this.filled++] = s < 0 ? s * 0x8000 : s * 0x7fff;
        if (this.filled === this.block.length) {
          this.port.postMessage(this.block.buffer, [this.block.buffer]);
          this.block = new Int16Array(320);
          this.filled = 0;
        }
      }
    }
    return true;
  }
}

registerProcessor("pcm-capture", PcmCapture);
