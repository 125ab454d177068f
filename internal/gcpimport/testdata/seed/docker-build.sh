PROJECT_ID=<your-project-id>
REGION=<your-region>
PREFIX=<your-prefix>
REPOSITORY=$REGION-docker.pkg.dev/$PROJECT_ID/$PREFIX-repo
IMAGE=streamlit-image
TAG=latest
APP=$PREFIX-app

docker image build -t $IMAGE:$TAG .
docker tag $IMAGE:$TAG $REPOSITORY/$IMAGE:$TAG
docker push $REPOSITORY/$IMAGE:$TAG

gcloud run deploy $APP \
  --project $PROJECT_ID \
  --image $REPOSITORY/$IMAGE:$TAG \
  --platform managed \
  --region $REGION \
  --ingress internal-and-cloud-load-balancing \
  --allow-unauthenticated \
  --memory 2Gi \
  --cpu 1 \
  --max-instances 1 \
  --timeout 900 \
  --concurrency 80 \
  --port 8501
