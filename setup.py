from glob import glob

from setuptools import find_namespace_packages, setup

setup(
    name="contact-appliance",
    version="0.1.0",
    description="On-premise contact-center appliance: web app, operator and vendor tooling",
    python_requires=">=3.11",
    # Namespace discovery lists the data directories (templates, static, trust) as the
    # packages Python sees them as; plain find_packages leaves them out and setuptools
    # warns, once per directory, that their files are shipped outside any package.
    packages=find_namespace_packages(include=["appliance", "appliance.*"], exclude=["*.__pycache__"]),
    include_package_data=True,
    package_data={
        "appliance.web": ["templates/*.html", "templates/*/*.html", "static/*", "data/*.txt"],
        "appliance.core": ["trust/*.pub"],
    },
    install_requires=[
        "Flask>=3.0",
        "Flask-WTF>=1.2",
        "peewee>=3.17",
        "cryptography>=42",
        "click>=8.1",
        "waitress>=3.0",
        "argon2-cffi>=23.1",
        "PyYAML>=6.0",
        "requests>=2.31",
        "pyotp>=2.9",
        "segno>=1.6",
        "nh3>=0.2.17",  # HTML mail to safe text; knowledge-base HTML sanitised
        "markdown-it-py>=3.0",  # knowledge-base articles
    ],
    extras_require={
        "postgres": ["psycopg2-binary>=2.9"],
        "production": ["gunicorn>=22", "psycopg2-binary>=2.9"],
        "test": [
            "pytest>=8",
            "pytest-timeout>=2.3",
            "psycopg2-binary>=2.9",
            "gunicorn>=22",
            "ruff>=0.5",
            "wheel",
            "selenium>=4.20",
            "import-linter>=2.1",
            "hypothesis>=6.100",
            "aiosmtpd>=1.4.4",  # a real SMTP server (STARTTLS, AUTH) for the e-mail tests
            "schemathesis>=4.0",  # tests/test_fuzz_api.py (brings hypothesis and jsonschema)
        ],
        "lab": ["ansible>=10", "ansible-lint>=24"],
        # docs/screenshots/make.py: drives Chromium and shrinks the PNGs to a palette.
        "docs": ["selenium>=4.20", "pillow>=10"],
    },
    # sizing/*.yml are read by Ansible from the repository and by appliance/core/sizing.py
    # from here once installed: shipped as-is, never copied into the package.
    data_files=[("share/contact-appliance/sizing", sorted(glob("sizing/*.yml")))],
    entry_points={"console_scripts": ["appliance=appliance.cli:main"]},
)
