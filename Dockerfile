# The image of every Airflow container in docker-compose.yaml (and of an Azure deployment): the
# official Airflow 3.3.2 image plus what production runs, nothing of the tests or the linter.
# apache-airflow==3.3.2 is named in the same pip install, so pip can never move Airflow itself;
# constraints-runtime.txt (a subset of the lock CI tests, same versions) pins the rest.
FROM apache/airflow:3.3.2-python3.11

COPY --chown=airflow:0 requirements.txt constraints-runtime.txt /opt/airflow/requirements/
RUN pip install --no-cache-dir "apache-airflow==3.3.2" \
      -r /opt/airflow/requirements/requirements.txt \
      -c /opt/airflow/requirements/constraints-runtime.txt

# The pipeline's code. docker-compose mounts ./dags, ./plugins and ./include over these for
# development; an image deployed to Azure carries them.
COPY --chown=airflow:0 dags /opt/airflow/dags
COPY --chown=airflow:0 plugins /opt/airflow/plugins
COPY --chown=airflow:0 include /opt/airflow/include
ENV PYTHONPATH=/opt/airflow/include
