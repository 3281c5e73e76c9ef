"""Camera adapters: picamera2 (Raspberry Pi only), OpenCV VideoCapture, and the simulator."""
