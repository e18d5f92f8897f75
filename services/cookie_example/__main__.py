"""``python -m services.cookie_example``: serve one node on http://127.0.0.1:5000."""

from services.cookie_example.app import app

if __name__ == "__main__":
    app.run(host="127.0.0.1", port=5000)
