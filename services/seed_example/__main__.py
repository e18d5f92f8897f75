"""``python -m services.seed_example``: serve the example on http://127.0.0.1:5000."""

from services.seed_example.app import app

if __name__ == "__main__":
    app.run(host="127.0.0.1", port=5000)
